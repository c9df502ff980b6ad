"""The line refinement: bracketing and bisection of the learning rate on the anchor line
(optimizer/tuning/line_search.py), and the study mirror asking it for its share of a job."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from optimizer.job_spec import JobSpec
from optimizer.space import Fixed, SearchSpace
from optimizer.tuning.line_search import MIN_GAP, STEP, propose
from optimizer.tuning.mirror import StudyMirror, TrialSnapshot
from optimizer.tuning.policy import LINE_SHARE, line_plan

LOW, HIGH = -5.0, 0.0


def test_steps_up_while_the_best_is_the_highest_learning_rate_measured() -> None:
    done = [(-4.0, 0.5), (-3.0, 0.3), (-2.0, 0.2)]
    assert propose(done, [], 1, low=LOW, high=HIGH) == [-2.0 + STEP]
    # Two steps ahead of the results at most; then the gaps next to the best are split.
    assert propose(done, [], 3, low=LOW, high=HIGH) == [-1.5, -1.0, -2.5]


def test_steps_down_while_the_best_is_the_lowest_learning_rate_measured() -> None:
    done = [(-3.0, 0.1), (-2.0, 0.3), (-1.0, None)]
    assert propose(done, [], 1, low=LOW, high=HIGH) == [-3.0 - STEP]


def test_bisects_towards_a_learning_rate_that_diverged() -> None:
    done = [(-4.0, 0.5), (-3.0, 0.3), (-2.0, None)]
    # The best (1e-3) has a neighbour on both sides: the wider gap is split, then the other.
    assert propose(done, [], 2, low=LOW, high=HIGH) == [-2.5, -3.5]


def test_pending_learning_rates_count_as_taken() -> None:
    done = [(-4.0, 0.5), (-3.0, 0.3), (-2.0, None)]
    assert propose(done, [-2.5], 1, low=LOW, high=HIGH) == [-3.5]


def test_refinement_stops_at_the_resolution() -> None:
    u = -3.0
    done = [(u - 1.5 * MIN_GAP, 0.31), (u, 0.3), (u + 1.5 * MIN_GAP, 0.32)]
    assert propose(done, [], 4, low=LOW, high=HIGH) == []


def test_never_leaves_the_range() -> None:
    done = [(-0.2, 0.1), (-1.0, 0.5)]
    got = propose(done, [], 4, low=LOW, high=HIGH)
    assert got and all(LOW <= u <= HIGH for u in got) and 0.0 in got


def test_a_line_where_everything_diverged_goes_a_decade_below() -> None:
    assert propose([(-3.0, None), (-2.0, None)], [], 1, low=LOW, high=HIGH) == [-3.0 - 2 * STEP]


def test_nothing_measured_yet_fills_the_widest_gap() -> None:
    got = propose([], [-4.0, -3.0, -2.0], 2, low=LOW, high=HIGH)
    assert got == [-2.5, -3.5]


@pytest.mark.parametrize("u_star", [-3.7, -2.6, -1.4])
def test_a_narrow_optimum_is_found_within_the_resolution(u_star: float) -> None:
    """A sharp valley (loss 1 + 10 (u - u*)^2), a sweep a decade apart, then rounds of 4:
    within 12 proposals the best measured learning rate is within the resolution of u*."""
    done = [(u, 1 + 10 * (u - u_star) ** 2) for u in (-4.0, -3.0, -2.0)]
    for _ in range(3):
        for u in propose(done, [], 4, low=LOW, high=HIGH):
            done.append((u, 1 + 10 * (u - u_star) ** 2))
    best = min(done, key=lambda p: p[1])[0]
    assert abs(best - u_star) <= 2 * MIN_GAP


# -- the study mirror ---------------------------------------------------------------------


def _sweep_done(mirror: StudyMirror, spec: JobSpec, loss_at: float) -> int:
    """Finishes the warm start with losses falling towards ``loss_at`` (log10 lr)."""
    snaps = []
    for i, c in enumerate(spec.warm_start_configs):
        u = math.log10(c["learning_rate"])
        snaps.append(TrialSnapshot(i, "complete", dict(c), 1.0 + (u - loss_at) ** 2))
    mirror.sync(snaps)
    return len(snaps)


def _ask_bound(mirror: StudyMirror, n: int, start: int) -> list[dict[str, float]]:
    asked = mirror.ask(n)
    for i, a in enumerate(asked):
        mirror.bind(a, TrialSnapshot(start + i, "running", a.config))
    return [a.config for a in asked]


def test_the_mirror_asks_the_line_first_at_the_anchor_settings() -> None:
    spec = JobSpec.for_task("rosenbrock", n_trials=18, seeds=2)
    mirror = StudyMirror.for_job(spec, seed=0)
    n = _sweep_done(mirror, spec, loss_at=-1.0)  # the best of the sweep is its top, 1e-2
    configs = _ask_bound(mirror, 2, n)
    assert [c["eps_root"] for c in configs] == [1e-8, 1e-8]
    assert [round(math.log10(c["learning_rate"]), 6) for c in configs] == [-1.5, -1.0]
    assert all(c["b1"] == 0.9 and c["b2"] == 0.999 for c in configs)


def test_the_line_takes_its_share_and_the_sampler_the_rest() -> None:
    spec = JobSpec.for_task("rosenbrock", n_trials=64, seeds=2)
    mirror = StudyMirror.for_job(spec, seed=0)
    n = _sweep_done(mirror, spec, loss_at=-2.2)
    configs = _ask_bound(mirror, 30, n)
    plan = line_plan(spec)
    assert plan is not None
    on_line = sum(plan.on_line(c) for c in configs)
    swept = sum(plan.on_line(c) for c in spec.warm_start_configs)
    total = n + len(configs)
    assert on_line + swept <= math.ceil(LINE_SHARE * total)
    assert on_line >= 1 and on_line < len(configs)  # the sampler asked some (eps_root varies)
    assert any(c["eps_root"] != 1e-8 for c in configs)


def test_no_line_without_the_warm_start_or_over_a_fixed_learning_rate() -> None:
    spec = JobSpec.for_task("rosenbrock", n_trials=18, seeds=2)
    assert line_plan(replace(spec, warm_start=False)) is None
    fixed = replace(spec, space=SearchSpace(learning_rate=Fixed(1e-3)))
    assert line_plan(fixed) is None
    assert line_plan(spec) is not None


def test_the_anchor_follows_the_space() -> None:
    from optimizer.space import Range

    space = SearchSpace(eps_root=Range(1e-7, 1e-6, log=True), b1=Range(0.5, 0.8))
    spec = JobSpec.for_task("rosenbrock", n_trials=18, seeds=2, space=space)
    plan = line_plan(spec)
    assert plan is not None
    assert plan.anchor["eps_root"] == 1e-7 and plan.anchor["b1"] == 0.8


def test_each_trial_is_checked_for_the_line_once_however_many_are_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lease path at scale: asking n trials of a job of N checks each of the N once (it
    checked all N for each of the n before: 30 % of the server's time at 5,000 trials)."""
    from optimizer.tuning.policy import LinePlan

    spec = JobSpec.for_task("rosenbrock", n_trials=5_000, seeds=2)
    mirror = StudyMirror.for_job(spec, seed=0)
    n = _sweep_done(mirror, spec, loss_at=-2.2)
    off_line = {**spec.warm_start_configs[0], "eps_root": 1e-12}
    mirror.sync(
        TrialSnapshot(n + i, "complete", {**off_line, "learning_rate": 10 ** (-4 + i / 500)}, 1.0)
        for i in range(1_000)
    )
    n += 1_000
    checks = 0
    real = LinePlan.on_line

    def counted(self: LinePlan, params: dict[str, float]) -> bool:
        nonlocal checks
        checks += 1
        return real(self, params)

    monkeypatch.setattr(LinePlan, "on_line", counted)
    configs = _ask_bound(mirror, 50, n)
    assert checks == n  # every row once, not once per asked trial
    assert any(c["eps_root"] == 1e-8 for c in configs)  # the line did ask
    checks = 0
    _ask_bound(mirror, 50, n + 50)
    assert checks == 50  # only the rows bound since
