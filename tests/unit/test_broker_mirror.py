"""The broker's pure parts: tokens, outcome judging, divergence penalty, the sampler mirror."""

from __future__ import annotations

import math
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.job_spec import JobSpec
from optimizer.space import Fixed, Range, SearchSpace
from optimizer.tuning.mirror import StudyMirror, TrialSnapshot
from optimizer.tuning.outcome import TrialResult, divergence_penalty
from optimizer.tuning.policy import search_space
from service.broker.tokens import hash_token, new_token

SPEC = JobSpec.for_task(
    "rosenbrock",
    space=SearchSpace(
        learning_rate=Range(1e-5, 1.0, log=True), b1=Fixed(0.9), b2=Range(0.9, 0.9999)
    ),
    sampler="tpe",
    pruner="none",
    seed=0,
    steps=100,
)


def make_mirror(spec: JobSpec = SPEC) -> StudyMirror:
    return StudyMirror.for_job(spec)


def test_tokens_are_unique_and_hashed() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    token = next(iter(tokens))
    assert hash_token(token) == hash_token(token)
    assert token not in hash_token(token)
    assert len({hash_token(t) for t in tokens}) == 1000


def test_search_space_splits_fixed_and_searched() -> None:
    space = search_space(SPEC)
    # eps_root is searched by default (optax's 1e-16 blows up early; facts.md).
    assert set(space.distributions) == {"learning_rate", "b2", "eps_root"}
    assert space.distributions["learning_rate"].log
    assert space.fixed == {"b1": 0.9, "eps": 1e-16, "weight_decay": 0.0}
    config = space.config({"learning_rate": 0.01, "b2": 0.95, "eps_root": 1e-8})
    assert set(config) == {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}


@pytest.mark.parametrize(
    ("final", "steps_at", "state", "step"),
    [
        ([0.5, 0.7], [None, None], "complete", None),
        ([0.5, None], [None, 12], "diverged", 12),
        ([0.5, 0.6], [30, 12], "diverged", 12),
        ([0.5, None], [None, None], "diverged", 100),  # non-finite but not flagged
        ([0.5, math.nan], None, "diverged", 100),
        ([0.5, math.inf], None, "diverged", 100),
        ([-math.inf, 0.4], None, "diverged", 100),
    ],
)
def test_judged_result(final: list, steps_at: list | None, state: str, step: int | None) -> None:
    outcome = TrialResult.judge(
        final_losses=final,
        validation_losses=None,
        last_finite_losses=[0.4, 0.8],
        diverged_at_step=steps_at,
        steps=100,
    )
    assert outcome.state == state
    assert outcome.diverged_at_step == step
    if state == "complete":
        assert outcome.value == pytest.approx(0.6)
    else:
        assert outcome.value is None
        assert outcome.last_finite_loss == pytest.approx(0.6)


def test_judge_outcome_prefers_complete_validation() -> None:
    kwargs = dict(final_losses=[1.0, 2.0], last_finite_losses=None, diverged_at_step=None)
    assert TrialResult.judge(validation_losses=[3.0, 5.0], steps=10, **kwargs).value == 4.0
    assert TrialResult.judge(validation_losses=[3.0, None], steps=10, **kwargs).value == 1.5


def test_penalty_is_finite_and_worse_than_every_finished_loss() -> None:
    for values in ([0.1, 0.3, 2.5], [-4.0, -1.0], [1e6], []):
        early = divergence_penalty(values, diverged_at_step=2, steps=100)
        late = divergence_penalty(values, diverged_at_step=99, steps=100)
        assert math.isfinite(early) and math.isfinite(late)
        assert all(late > v for v in values)
        assert early > late  # blowing up sooner ranks worse
    assert divergence_penalty([], diverged_at_step=1, steps=10, last_finite_loss=50.0) > 50.0


def _snap(tid: int, state: str, lr: float, value: float | None = None, **kw) -> TrialSnapshot:
    return TrialSnapshot(tid, state, {"learning_rate": lr, "b2": 0.99, "b1": 0.9}, value, **kw)


def _states(mirror: StudyMirror) -> list[tuple[TrialState, float | None]]:
    return [(t.state, t.value) for t in mirror.study.get_trials(deepcopy=False)]


def test_mirror_tracks_states_and_penalises_divergence() -> None:
    mirror = make_mirror()
    mirror.sync(
        [_snap(1, "running", 1e-3), _snap(2, "waiting", 1e-2), _snap(3, "complete", 1e-4, 0.5)]
    )
    assert mirror.known_states() == {1: "running", 2: "waiting", 3: "complete"}
    mirror.sync([_snap(1, "diverged", 1e-3, diverged_at_step=3, last_finite_loss=2.0)])
    mirror.sync([_snap(2, "failed", 1e-2)])
    by_state = dict((s, v) for s, v in _states(mirror) if s != TrialState.COMPLETE)
    assert by_state == {TrialState.FAIL: None}
    values = sorted(v for s, v in _states(mirror) if s == TrialState.COMPLETE)
    assert values[0] == 0.5 and math.isfinite(values[1]) and values[1] > 0.5


def test_mirror_rebuilds_when_a_finished_loss_passes_a_penalty() -> None:
    mirror = make_mirror()
    mirror.sync([_snap(1, "complete", 1e-4, 0.5), _snap(2, "diverged", 1.0, diverged_at_step=5)])
    penalty = max(v for _, v in _states(mirror))
    mirror.sync([_snap(3, "complete", 1e-3, penalty + 10.0)])
    values = [v for s, v in _states(mirror) if s == TrialState.COMPLETE]
    assert len(values) == 3
    assert max(values) > penalty + 10.0  # the diverged trial still ranks last


def test_mirror_ask_is_pending_aware_and_binds() -> None:
    mirror = make_mirror(replace(SPEC, sampler="random"))
    asked = mirror.ask(5)
    assert len({a.mirror_id for a in asked}) == 5
    for a in asked:
        assert 1e-5 <= a.config["learning_rate"] <= 1.0 and a.config["b1"] == 0.9
    running = [t for t in mirror.study.get_trials() if t.state == TrialState.RUNNING]
    assert len(running) == 5
    for i, a in enumerate(asked):
        mirror.bind(a, TrialSnapshot(100 + i, "running", a.config))
    mirror.sync([TrialSnapshot(100, "complete", asked[0].config, 0.25)])
    assert [t.value for t in mirror.study.get_trials() if t.state == TrialState.COMPLETE] == [0.25]
    assert len(mirror) == 5


def _steered_share(diverged_as: str) -> int:
    """Trials below a divergence edge at 1e-2 among 40 TPE proposals, where finished losses
    improve towards the edge and every learning rate above it diverged (told as `diverged_as`).
    Each proposal is asked alone and then failed, so no pending trial sways the next one.
    Without the warm start, so without the line refinement: every proposal is TPE's."""
    space = SearchSpace(learning_rate=SPEC.space.learning_rate)
    mirror = make_mirror(replace(SPEC, space=space, warm_start=False))
    rng = optuna.samplers.RandomSampler(seed=1)._rng.rng
    snaps = []
    for i in range(60):
        lr = float(10 ** rng.uniform(-5, 0))
        if lr > 1e-2:
            snaps.append(_snap(i, diverged_as, lr, diverged_at_step=3, last_finite_loss=1.0))
        else:
            snaps.append(_snap(i, "complete", lr, 1.0 - 0.1 * math.log10(lr / 1e-5)))
    mirror.sync(snaps)
    below = 0
    for j in range(40):
        (asked,) = mirror.ask(1)
        mirror.bind(asked, TrialSnapshot(1000 + j, "running", asked.config))
        mirror.sync([TrialSnapshot(1000 + j, "failed", asked.config)])
        below += asked.config["learning_rate"] <= 1e-2
    return below


def test_tpe_mirror_steers_away_from_the_diverged_region() -> None:
    """Told as a penalty, divergence keeps TPE below the edge; told as a failure (what NaN
    does in Optuna), TPE follows the improving losses over the edge."""
    penalised = _steered_share("diverged")
    ignored = _steered_share("failed")
    assert penalised >= 36
    assert penalised > ignored + 10


def test_mirror_pruner_stops_a_bad_running_trial() -> None:
    mirror = make_mirror(replace(SPEC, pruner="median"))
    done = [_snap(i, "complete", 1e-3, 0.1, intermediate={10: 0.2, 20: 0.1}) for i in range(6)]
    mirror.sync(done)
    mirror.sync([_snap(10, "running", 1e-1), _snap(11, "running", 1e-3)])
    # MedianPruner reads the completed trials' intermediate values from the mirror.
    assert mirror.should_prune(10, {10: 5.0, 20: 5.0})
    assert not mirror.should_prune(11, {10: 0.15, 20: 0.05})


def test_tpe_speedups_keep_the_proposals() -> None:
    """The mirror's TPE speed-ups (tpe_speedups.py) change nothing TPE proposes: a mirror
    whose sampler runs Optuna's own conversion and acquisition asks exactly the same
    configurations, across finished, diverged, pruned, failed, running and out-of-range rows,
    and a rebuild."""
    import random

    spec = replace(SPEC, seed=3)
    cached, plain = make_mirror(spec), make_mirror(spec)
    assert cached._speedups is not None
    del plain._sampler._get_internal_repr  # back to TPESampler's own methods
    del plain._sampler._compute_acquisition_func
    del plain._sampler._sample
    rng = random.Random(7)
    snaps = []
    for i in range(40):
        state = ["complete", "complete", "diverged", "pruned", "failed", "running"][i % 6]
        params = {
            "learning_rate": 10 ** rng.uniform(-5, 0),
            "b2": rng.uniform(0.9, 0.9999) if i != 7 else 2.0,  # 7: out of range
            "eps_root": 10 ** rng.uniform(-16, -6),
        }
        snaps.append(
            TrialSnapshot(
                trial_id=i,
                state=state,
                params=params,
                value=rng.random() if state == "complete" else None,
                diverged_at_step=50 if state == "diverged" else None,
                intermediate={5: rng.random(), 10: rng.random()} if state == "pruned" else {},
            )
        )
    for mirror in (cached, plain):
        mirror.sync(snaps)
    next_id = 100
    for round_ in range(4):
        a, b = cached.ask(4), plain.ask(4)
        assert [x.config for x in a] == [y.config for y in b]
        finished = []
        for x, y in zip(a, b, strict=True):
            for mirror, asked in ((cached, x), (plain, y)):
                mirror.bind(asked, TrialSnapshot(next_id, "running", asked.config))
            finished.append(
                TrialSnapshot(next_id, "complete", x.config, value=0.1 * round_ + 0.01 * next_id)
            )
            next_id += 1
        for mirror in (cached, plain):
            mirror.sync(finished)
        if round_ == 2:  # a much worse finished loss passes the penalties: both rebuild
            worst = TrialSnapshot(next_id, "complete", x.config, value=1e6)
            next_id += 1
            for mirror in (cached, plain):
                mirror.sync([worst])
    assert cached._sampler._get_internal_repr._kept
    assert cached._sampler._sample._key is not None


def test_tpe_speedups_follow_a_rebuild_with_as_many_finished_trials() -> None:
    """A finished row edited in the table rebuilds the mirror with the same number of finished
    trials: the kept split must not survive it (the proposals still match Optuna's)."""
    import random

    spec = replace(SPEC, seed=5)
    fast, plain = make_mirror(spec), make_mirror(spec)
    for name in ("_get_internal_repr", "_compute_acquisition_func", "_sample"):
        delattr(plain._sampler, name)
    rng = random.Random(3)
    snaps = [
        TrialSnapshot(
            i,
            "complete",
            {"learning_rate": 10 ** rng.uniform(-5, 0), "b2": rng.uniform(0.9, 0.9999)},
            value=rng.random(),
        )
        for i in range(30)
    ]
    worst = max(snaps, key=lambda s: s.value or 0.0)
    edited = TrialSnapshot(worst.trial_id, "complete", worst.params, value=-1.0)  # now the best
    asked = []
    for mirror in (fast, plain):
        mirror.sync(snaps)
        first = [a.config for a in mirror.ask(3)]
        mirror.sync([edited])
        asked.append((first, [a.config for a in mirror.ask(3)]))
    assert asked[0] == asked[1]
