"""The recommendation on synthetic problems whose loss curve and divergence edge are known.

Accuracy is measured in log space relative to the search range: with the learning-rate
range ``[1e-5, 1]`` (5 decades),

    error = |log10(lr_recommended) - log10(lr_target)| / (log10(1) - log10(1e-5)),

and "within 10 %" means ``error <= 0.10`` (half a decade). The target is the true optimum of
the loss, or ``edge / margin`` where the optimum lies above that safe limit; with ``eps_root``
tuned too, it is the true optimum of the loss subject to ``lr <= edge(eps_root) / margin``.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.recommendation import (
    DEFAULT_MARGIN,
    NotEnoughEvidence,
    TrialOutcome,
    recommend,
)

LOG_LO, LOG_HI = -5.0, 0.0
TOLERANCE = 0.10  # of the log10 range: half a decade
NOISE = {"none": 0.0, "moderate": 0.03, "strong": 0.1}  # the loss rises 0.1 one decade off


def edge_log(e: float) -> float:
    """log10 divergence edge vs log10 eps_root: 3e-2 above eps_root 1e-8, 1e-4 at 1e-16."""
    return -1.5 - max(0.0, -8.0 - e) * 2.5 / 8.0


def true_loss(u: float, e: float, u_star: float, e_star: float, b: float) -> float:
    return 1.0 + 0.1 * (u - u_star) ** 2 + b * (e - e_star) ** 2


def make_trials(
    noise: float,
    u_star: float,
    *,
    edge: float | None = None,
    e_star: float | None = None,
    b: float = 0.0,
    n_random: int = 36,
    seed: int = 0,
) -> list[TrialOutcome]:
    """A 12-point warm-start sweep (eps_root 1e-8) then log-uniform random trials, 3 seeds.

    With ``edge`` the edge is fixed (only the learning rate is tuned); otherwise eps_root is
    tuned over [1e-16, 1e-6] and the edge follows ``edge_log``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for n in range(12 + n_random):
        u = LOG_LO + (LOG_HI - LOG_LO) * n / 11 if n < 12 else rng.uniform(LOG_LO, LOG_HI)
        e = -8.0 if n < 12 or edge is not None else rng.uniform(-16.0, -6.0)
        el = math.log10(edge) if edge is not None else edge_log(e)
        diverged = u > el
        losses = tuple(
            None
            if diverged
            else true_loss(u, e, u_star, e_star or 0.0, b) + noise * rng.standard_normal()
            for _ in range(3)
        )
        params = {"learning_rate": 10.0**u}
        if edge is None:
            params["eps_root"] = 10.0**e
        out.append(TrialOutcome(n, params, losses, (diverged,) * 3))
    return out


def constrained_target(u_star: float, e_star: float, b: float, margin: float) -> float:
    best = min(
        (true_loss(min(u_star, edge_log(e) - math.log10(margin)), e, u_star, e_star, b), e)
        for e in np.linspace(-16.0, -6.0, 4001)
    )
    return min(u_star, edge_log(best[1]) - math.log10(margin))


def log_error(lr: float, target_log10: float) -> float:
    return abs(math.log10(lr) - target_log10) / (LOG_HI - LOG_LO)


@pytest.mark.parametrize("noise", NOISE.values(), ids=NOISE.keys())
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("lr_star", "edge"), [(3e-3, 3e-2), (1e-1, 3e-2)], ids=["optimum-safe", "optimum-above-edge"]
)
def test_learning_rate_only(noise: float, seed: int, lr_star: float, edge: float) -> None:
    trials = make_trials(noise, math.log10(lr_star), edge=edge, seed=seed)
    rec = recommend(trials, status="final")
    target = min(math.log10(lr_star), math.log10(edge / DEFAULT_MARGIN))
    assert log_error(rec.learning_rate, target) <= TOLERANCE
    # The margin holds against the true edge and against every learning rate that diverged.
    assert rec.learning_rate * rec.margin <= edge
    diverged = [t.params["learning_rate"] for t in trials if any(t.diverged)]
    assert rec.learning_rate * rec.margin <= min(diverged)
    assert rec.divergence_lr is not None and rec.divergence_lr <= min(diverged)
    lo, hi = rec.lr_interval
    assert lo <= rec.learning_rate <= hi <= rec.divergence_lr / rec.margin * (1 + 1e-9)


def test_without_any_divergence_there_is_no_edge() -> None:
    rec = recommend(make_trials(0.03, math.log10(3e-3), edge=10.0, seed=7), status="final")
    assert rec.divergence_lr is None and rec.evidence.n_seeds_diverged == 0
    assert log_error(rec.learning_rate, math.log10(3e-3)) <= TOLERANCE
    assert rec.to_dict()["divergence_lr"] is None


def test_noise_free_optimum_is_found_to_a_few_percent() -> None:
    rec = recommend(make_trials(0.0, math.log10(3e-3), edge=3e-2), status="final")
    assert abs(rec.learning_rate / 3e-3 - 1.0) <= 0.05  # 2 significant digits of rounding


@pytest.mark.parametrize("noise", NOISE.values(), ids=NOISE.keys())
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("e_star", [-7.0, -12.0], ids=["safe-eps-root", "risky-eps-root"])
def test_eps_root_tuned_edge_moves(noise: float, seed: int, e_star: float) -> None:
    # With e_star = -12 the loss prefers an eps_root whose edge cuts below lr*: the answer
    # trades loss against the edge and lies on the constraint.
    u_star, b = math.log10(3e-3), 0.01
    rec = recommend(
        make_trials(noise, u_star, e_star=e_star, b=b, n_random=100, seed=seed), status="final"
    )
    assert rec.evidence.tuned == ("learning_rate", "eps_root")
    assert (
        log_error(rec.learning_rate, constrained_target(u_star, e_star, b, rec.margin)) <= TOLERANCE
    )
    # The edge between sampled trials is known only to their resolution; allow 0.1 decade.
    assert math.log10(rec.learning_rate * rec.margin) <= edge_log(math.log10(rec.eps_root)) + 0.1


def test_never_from_non_finite_or_diverged_seeds() -> None:
    trials = make_trials(0.03, math.log10(3e-3), edge=3e-2, seed=1)
    n, n_diverged = len(trials), sum(sum(t.diverged) for t in trials)
    # At the true optimum: a NaN seed, an infinite seed, a -inf "best" seed, one diverged seed.
    bad = [
        (2.9e-3, (math.nan, 1.0, 1.0), ()),
        (3.1e-3, (math.inf, 1.0, 1.0), ()),
        (3.0e-3, (-math.inf, 0.5, 0.5), ()),
        (3.2e-3, (0.2, 0.2, None), (False, False, True)),
    ]
    trials += [
        TrialOutcome(n + i, {"learning_rate": lr}, losses, div)
        for i, (lr, losses, div) in enumerate(bad)
    ]
    rec = recommend(trials, status="final")
    assert rec.learning_rate not in {lr for lr, _, _ in bad}
    assert rec.learning_rate * rec.margin <= 2.9e-3
    assert rec.evidence.n_seeds_diverged == n_diverged + 4
    assert 0.9 < rec.expected_loss.mean < 1.2
    json.dumps(rec.to_dict(), allow_nan=False)


@pytest.mark.parametrize("with_paper_trial", [False, True])
@settings(max_examples=8, deadline=None)
@given(rnd=st.randoms(use_true_random=False))
def test_independent_of_trial_order(rnd, with_paper_trial: bool) -> None:
    trials = make_trials(0.03, math.log10(3e-3), e_star=-9.0, b=0.01, seed=5)
    if with_paper_trial:  # a tie the paper's setting may win
        trials = _with_paper_trial(math.log10(1.5e-3), noise=0.03)
    shuffled = list(trials)
    rnd.shuffle(shuffled)
    assert recommend(shuffled, status="final") == recommend(trials, status="final")


def test_provisional_answers_converge_to_the_final_one() -> None:
    trials = make_trials(0.03, math.log10(3e-3), e_star=-9.0, b=0.01, n_random=100, seed=2)
    final = recommend(trials, status="final")
    errors = []
    # Every 10 trials from 24, then all of them (the last provisional answer is the final).
    for k in [*range(24, len(trials), 10), len(trials)]:
        prov = recommend(trials[:k], status="provisional")
        errors.append(log_error(prov.learning_rate, math.log10(final.learning_rate)))
    assert errors[-1] == 0.0
    assert all(e <= TOLERANCE for e in errors[len(errors) // 2 :])
    same = recommend(trials, status="provisional")
    assert same.to_dict() | {"status": "final"} == final.to_dict()


def test_not_enough_evidence() -> None:
    trials = make_trials(0.0, math.log10(3e-3), edge=3e-2)
    with pytest.raises(NotEnoughEvidence, match="at least 5"):
        recommend(trials[:4], status="provisional")
    all_diverged = [TrialOutcome(t.number, t.params, (None,) * 3, (True,) * 3) for t in trials]
    with pytest.raises(NotEnoughEvidence, match="0 trial"):
        recommend(all_diverged, status="provisional")
    # Safe trials only just below a diverged one: nothing is a factor 2 below the edge.
    close = [
        TrialOutcome(i, {"learning_rate": lr}, (1.0, 1.0), ())
        for i, lr in enumerate([1e-2, 1.1e-2, 1.2e-2, 1.3e-2, 1.4e-2])
    ]
    close.append(TrialOutcome(9, {"learning_rate": 1.5e-2}, (None, None), (True, True)))
    with pytest.raises(NotEnoughEvidence, match=f"factor {DEFAULT_MARGIN:g}"):
        recommend(close, status="provisional")


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        TrialOutcome(0, {"learning_rate": math.nan}, (1.0,))
    with pytest.raises(ValueError, match="flags"):
        TrialOutcome(0, {"learning_rate": 1e-3}, (1.0, 1.0), (False,))
    trials = make_trials(0.0, math.log10(3e-3), edge=3e-2)
    with pytest.raises(ValueError, match="status"):
        recommend(trials, status="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        recommend([*trials, trials[0]], status="final")


def test_output_is_json_safe_and_the_optax_line_matches() -> None:
    rec = recommend(
        make_trials(0.03, math.log10(3e-3), e_star=-9.0, b=0.01, seed=3), status="provisional"
    )
    d = json.loads(json.dumps(rec.to_dict(), allow_nan=False))
    assert d["status"] == "provisional" and d["evidence"]["tuned"] == ["learning_rate", "eps_root"]
    call = ast.parse(rec.optax, mode="eval").body
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "optax.contrib.acprop"
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert kwargs == {n: d[n] for n in ("learning_rate", "b1", "b2", "eps", "eps_root")}


def test_importing_does_not_import_jax() -> None:
    code = "import sys, optimizer.recommendation; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _small_job(lrs_and_divergence: list[tuple[float, tuple[bool, ...]]]) -> list[TrialOutcome]:
    """Trials at the given learning rates (eps_root fixed), loss optimum 3e-3, no noise."""
    return [
        TrialOutcome(
            n,
            {"learning_rate": lr},
            tuple(
                None if d else true_loss(math.log10(lr), 0.0, math.log10(3e-3), 0.0, 0.0)
                for d in div
            ),
            div,
        )
        for n, (lr, div) in enumerate(lrs_and_divergence)
    ]


def test_an_isolated_blow_up_below_safe_trials_does_not_refuse() -> None:
    """Regression: one seed lost at 2.9e-4 while trials up to 1.9e-2 trained in every seed
    capped the edge at 2.9e-4, and with the lowest learning rate tried (1.01e-4, 300x below
    the true edge 3e-2) short of a factor 3 (the margin then) below it the job got
    NotEnoughEvidence."""
    ok, one_lost = (False, False), (True, False)
    lrs = [1.01e-4, 1.12e-4, 2.76e-4, 3.6e-4, 4.76e-4, 1.62e-3, 1.74e-3, 2.65e-3, 3.3e-3, 1.94e-2]
    trials = _small_job([(lr, ok) for lr in lrs] + [(2.9e-4, one_lost), (6.05e-2, (True, True))])
    rec = recommend(trials, status="final")
    # Below the blow-up (the margin is kept below the edge proper, not below an isolated one).
    assert 1.01e-4 <= rec.learning_rate < 2.9e-4


def test_blow_ups_at_the_lowest_learning_rate_still_refuse() -> None:
    ok, one_lost = (False, False), (True, False)
    lrs = [2.5e-4, 3e-4, 1.5e-3, 2e-3, 2e-2]
    trials = _small_job([(1.7e-4, one_lost)] + [(lr, ok) for lr in lrs] + [(7e-2, (True, True))])
    with pytest.raises(NotEnoughEvidence, match="extend the learning-rate range downwards"):
        recommend(trials, status="final")


def test_rounding_the_other_settings_keeps_the_safe_limit() -> None:
    """Regression: the best point sat at the safe limit of one explored eps_root; rounding
    eps_root to 3 digits moved it out of that trial's comparable radius, the safe limit
    became -inf and `recommend` raised ValueError (math domain error) instead of answering."""
    rng = np.random.default_rng(1054)
    trials = []
    for n in range(12):
        lr, er = 10 ** rng.uniform(-4, -1), 10 ** rng.uniform(-16, -6)
        edge = 10 ** np.interp(math.log10(er), [-16, -8], [-4, math.log10(3e-2)])
        div = bool(lr > edge)
        if not div:
            rng.standard_normal()  # the draw of the generator this case was found with
        loss = None if div else true_loss(math.log10(lr), 0.0, math.log10(3e-3), 0.0, 0.0)
        trials.append(TrialOutcome(n, {"learning_rate": lr, "eps_root": er}, (loss,), (div,)))
    rec = recommend(trials, status="final")
    assert rec.learning_rate > 0.0
    assert rec.learning_rate * rec.margin <= rec.divergence_lr * (1 + 1e-9)


def test_safety_does_not_carry_down_a_jump_of_the_edge_in_eps_root() -> None:
    # ACProp's edge only rises with eps_root; here it jumps from 2e-3 (below 1e-10) to 3e-2.
    # Trials just above the jump trained at high learning rates: that must not make a
    # learning rate safe just below it. The service's 40-trial warm start, then random
    # trials, 300 draws (before safe trials vouched only for settings at or above their own
    # eps_root, 5 of these draws recommended above edge / margin, 4 above the edge).
    from optimizer.space import SearchSpace
    from optimizer.warm_start import warm_start_configs

    def edge(eps_root: float) -> float:
        return 3e-2 if eps_root >= 1e-10 else 2e-3

    sweep = warm_start_configs(SearchSpace(), 40)
    unsafe = []
    for draw in range(300):
        rng = np.random.default_rng(draw)
        configs = list(sweep) + [
            {
                **sweep[0],
                "learning_rate": 10 ** rng.uniform(-5, 0),
                "eps_root": 10 ** rng.uniform(-16, -6),
            }
            for _ in range(40 - len(sweep))
        ]
        outcomes = []
        for number, c in enumerate(configs):
            diverged = c["learning_rate"] > edge(c["eps_root"])
            loss = 0.1 + (math.log10(c["learning_rate"]) - math.log10(3e-3)) ** 2
            outcomes.append(TrialOutcome(number, c, (loss, loss + 0.001), (diverged, diverged)))
        rec = recommend(outcomes, status="final")
        if rec.learning_rate > edge(rec.eps_root) / rec.margin * 1.0001:
            unsafe.append((draw, rec.learning_rate, rec.eps_root))
    assert unsafe == []


def _with_paper_trial(
    u_star: float, *, edge: float = 3e-2, noise: float = 0.0, paper_diverged: bool = False
) -> list[TrialOutcome]:
    """``make_trials`` at eps_root 1e-8 plus a trial at the paper's setting (1e-3, 1e-8)."""
    base = make_trials(noise, u_star, edge=edge)
    trials = [
        TrialOutcome(t.number, {**t.params, "eps_root": 1e-8}, t.losses, t.diverged) for t in base
    ]
    loss = true_loss(-3.0, -8.0, u_star, 0.0, 0.0)
    diverged = (paper_diverged, False, False)
    losses = tuple(None if d else loss for d in diverged)
    trials.append(TrialOutcome(99, {"learning_rate": 1e-3, "eps_root": 1e-8}, losses, diverged))
    return trials


@pytest.mark.parametrize("noise", ["none", "moderate"])
def test_the_paper_setting_wins_a_tie(noise: str) -> None:
    # The optimum at 1.5e-3: the paper's 1e-3 is 0.3 % worse, inside the 2 % tolerance.
    rec = recommend(_with_paper_trial(math.log10(1.5e-3), noise=NOISE[noise]), status="final")
    assert (rec.learning_rate, rec.eps_root) == (1e-3, 1e-8)
    assert rec.lr_interval[0] < 1e-3 and rec.lr_interval[1] > 1.5e-3


def _two_levels(
    edge_at_1e8: float, *, paper_lost_at_1e16: bool = False, curvature: float = 0.1
) -> list[TrialOutcome]:
    """No noise, loss optimum 1.5e-3 at every eps_root (``1 + curvature * (log10 lr -
    log10 1.5e-3)**2``); learning rates 1e-5..1 at eps_root 1e-8 (edge ``edge_at_1e8``) and
    1e-6 (edge 3e-2), plus the paper's trial."""

    def loss_at(u: float) -> float:
        return 1.0 + curvature * (u - math.log10(1.5e-3)) ** 2

    out = []
    for level, edge in ((1e-8, edge_at_1e8), (1e-6, 3e-2)):
        for k in range(16):
            u = LOG_LO + (LOG_HI - LOG_LO) * (k + 0.5) / 16
            diverged = 10.0**u > edge
            loss = None if diverged else loss_at(u)
            params = {"learning_rate": 10.0**u, "eps_root": level}
            out.append(TrialOutcome(len(out), params, (loss,) * 2, (diverged,) * 2))
    paper = loss_at(-3.0)
    out.append(TrialOutcome(90, {"learning_rate": 1e-3, "eps_root": 1e-8}, (paper,) * 2))
    if paper_lost_at_1e16:
        out.append(
            TrialOutcome(91, {"learning_rate": 1e-3, "eps_root": 1e-16}, (None,) * 2, (True,) * 2)
        )
    return out


def test_an_unsafe_paper_setting_leaves_the_fits_choice_alone() -> None:
    # At eps_root 1e-8 the edge is 1.5e-3, so 1e-3 is above edge / margin there; the fit's
    # choice at eps_root 1e-6 (edge 3e-2) stands, rather than 1e-8 with a learning rate cut
    # down to that edge's limit (10 % worse with this curvature, so beyond the wider tie of
    # eps_root 1e-8 too; with curvature 0.1 it is 2 % worse and 1e-8 wins that tie).
    rec = recommend(_two_levels(1.5e-3, curvature=0.5), status="final")
    assert rec.eps_root > 1e-7
    assert abs(math.log10(rec.learning_rate / 1.5e-3)) <= 0.1


def test_the_paper_setting_steps_off_a_learning_rate_that_diverged() -> None:
    # 1e-3 diverged at eps_root 1e-16: the tie still goes to eps_root 1e-8, at 9.9e-4.
    rec = recommend(_two_levels(3e-2, paper_lost_at_1e16=True), status="final")
    assert (rec.learning_rate, rec.eps_root) == (9.9e-4, 1e-8)


def test_the_paper_setting_loses_when_clearly_worse() -> None:
    # The optimum at 1e-2: the paper's 1e-3 is 10 % worse, so the fit's optimum stands.
    rec = recommend(_with_paper_trial(-2.0), status="final")
    assert abs(math.log10(rec.learning_rate) + 2.0) <= 0.1
    assert rec.learning_rate * rec.margin <= 3e-2


def test_the_paper_setting_needs_its_margin_and_a_clean_trial() -> None:
    # Flat enough to tie, but the edge at 1.5e-3 puts 1e-3 above edge / margin.
    near_edge = recommend(_with_paper_trial(math.log10(1.5e-3), edge=1.5e-3), status="final")
    assert near_edge.learning_rate * near_edge.margin <= 1.5e-3
    # A tie, but one seed of the paper's trial diverged: not the paper's setting, and a
    # margin below the learning rate that diverged.
    lost = recommend(_with_paper_trial(math.log10(1.5e-3), paper_diverged=True), status="final")
    assert lost.learning_rate * lost.margin <= 1e-3


def _level_pair(other: float, gain: float, u_star: float = -2.0) -> list[TrialOutcome]:
    """No noise, edge 3e-2; 16 learning rates at eps_root 1e-8 and 16 at ``other``, where
    the loss is ``gain`` (a fraction) lower; the optimum at ``10**u_star`` on both."""
    out = []
    for level, offset in ((1e-8, 0.0), (other, -gain)):
        for k in range(16):
            u = LOG_LO + (LOG_HI - LOG_LO) * (k + 0.5) / 16
            diverged = 10.0**u > 3e-2
            loss = None if diverged else true_loss(u, -8.0, u_star, 0.0, 0.0) + offset
            params = {"learning_rate": 10.0**u, "eps_root": level}
            out.append(TrialOutcome(len(out), params, (loss,) * 2, (diverged,) * 2))
    return out


@pytest.mark.parametrize("other", [1e-6, 1e-12])
def test_the_default_eps_root_wins_a_tie_against_a_far_one(other: float) -> None:
    # 3 % better two decades or more away from 1e-8: within EPS_ROOT_TOLERANCE, so 1e-8.
    rec = recommend(_level_pair(other, 0.03), status="final")
    assert rec.eps_root == 1e-8
    assert abs(math.log10(rec.learning_rate) + 2.0) <= 0.1


def test_a_far_eps_root_stands_when_clearly_better() -> None:
    rec = recommend(_level_pair(1e-6, 0.08), status="final")
    assert abs(math.log10(rec.eps_root) + 6.0) <= 0.05
    assert abs(math.log10(rec.learning_rate) + 2.0) <= 0.1


def test_a_near_eps_root_stands_without_the_wider_tie() -> None:
    # 3e-8 is within FAR_EPS_ROOT_DECADES of 1e-8: the fit's choice, 3 % better, is kept.
    rec = recommend(_level_pair(3e-8, 0.03), status="final")
    assert math.isclose(rec.eps_root, 3e-8, rel_tol=0.05)
