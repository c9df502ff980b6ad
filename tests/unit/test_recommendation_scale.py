"""The scalable fit (optimizer/recommendation/_subset.py): on jobs large enough to need it, the
answer agrees with the full fit's; the subset is deterministic and independent of trial order;
small jobs keep the full fit.

Agreement is measured as in test_recommendation.py: the distance in log10 learning rate as a
fraction of the 5-decade search range, within 10 % (half a decade). The jobs are
bench/recommendation_scale.py's (known optimum, a divergence edge moving with ``eps_root``)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bench.recommendation_scale import edge_log10, synthetic_job
from optimizer.recommendation import FULL_FIT_MAX_TRIALS, TrialOutcome, recommend
from optimizer.recommendation._subset import (
    N_ANCHORS,
    N_EDGE,
    N_NEAR,
    loss_fit_subset,
)

TOLERANCE = 0.10  # of the 5-decade learning-rate range
FULL = 10**9  # a threshold no job reaches: the full fit
SAFE = (math.log10(3e-3), -9.0)  # an optimum a margin below the edge
CUT = (-2.0, -12.0)  # an optimum whose eps_root puts the edge below it: the answer trades


def _apart(a: float, b: float) -> float:
    return abs(math.log10(a) - math.log10(b)) / 5.0


@pytest.mark.parametrize(
    ("n_trials", "optimum", "seed"),
    [(100, SAFE, 0), (600, SAFE, 1), (1000, CUT, 0), (1000, CUT, 1)],
    ids=["100-safe", "600-safe", "1000-cut-0", "1000-cut-1"],
)
def test_the_subset_fit_agrees_with_the_full_fit(
    n_trials: int, optimum: tuple[float, float], seed: int
) -> None:
    job = synthetic_job(n_trials, seed=seed, optimum=optimum)
    full = recommend(job, status="final", full_fit_max_trials=FULL)
    scaled = recommend(job, status="final", full_fit_max_trials=0)  # always the subset
    assert full.evidence.n_trials_fitted == full.evidence.n_trials_used
    assert scaled.evidence.n_trials_fitted is not None
    assert scaled.evidence.n_trials_fitted <= full.evidence.n_trials_used
    if n_trials >= 600:  # the subset is really a subset there
        assert scaled.evidence.n_trials_fitted < full.evidence.n_trials_used
    # Everything but the fit counts every trial.
    assert scaled.evidence.n_trials == full.evidence.n_trials == n_trials
    assert scaled.evidence.trials_used == full.evidence.trials_used
    assert _apart(scaled.learning_rate, full.learning_rate) <= TOLERANCE
    # Never above the edge the full fit estimates: the divergence model is fitted on every
    # trial either way, so at the same eps_root its edge is the full fit's.
    assert full.divergence_lr is not None and scaled.divergence_lr is not None
    assert scaled.learning_rate <= full.divergence_lr
    assert scaled.learning_rate * scaled.margin <= scaled.divergence_lr * (1 + 1e-9)
    if scaled.eps_root == full.eps_root:
        assert scaled.divergence_lr == pytest.approx(full.divergence_lr, rel=1e-12)
    # And below the true edge (0.1 decade: the edge between sampled trials).
    true_edge = edge_log10(math.log10(scaled.eps_root))
    assert math.log10(scaled.learning_rate * scaled.margin) <= true_edge + 0.1


def test_the_subset_is_independent_of_trial_order_and_deterministic() -> None:
    job = synthetic_job(700, seed=3)
    first = recommend(job, status="final", full_fit_max_trials=0)
    shuffled = list(job)
    random.Random(5).shuffle(shuffled)
    again = recommend(shuffled, status="final", full_fit_max_trials=0)
    assert first.to_dict() == again.to_dict()
    assert first.evidence.n_trials_fitted == again.evidence.n_trials_fitted
    # The selection itself: the same indices for the same content, every time.
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(900, 2))
    loss = (x[:, 0] - 0.4) ** 2 + 0.01 * rng.standard_normal(900)
    always = np.zeros(900, dtype=bool)
    a = loss_fit_subset(x, loss, always, max_full=0)
    assert np.array_equal(a, loss_fit_subset(x.copy(), loss.copy(), always, max_full=0))


def test_the_subset_keeps_the_best_the_edge_and_the_confirmation_trials() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.uniform(size=(n, 2))
    loss = (x[:, 0] - 0.4) ** 2 + 0.3 * (x[:, 1] - 0.7) ** 2 + 0.01 * rng.standard_normal(n)
    always = np.zeros(n, dtype=bool)
    always[[7, 1234, 2999]] = True
    chosen = loss_fit_subset(x, loss, always, max_full=FULL_FIT_MAX_TRIALS)
    assert np.all(np.diff(chosen) > 0) and chosen.size < 400  # bounded, ascending
    assert {7, 1234, 2999} <= set(chosen.tolist())
    anchors = np.argsort(loss, kind="stable")[:N_ANCHORS]
    assert set(anchors.tolist()) <= set(chosen.tolist())
    # The region around the best trials is kept whole: the N_NEAR trials closest to them.
    dist = np.linalg.norm(x[:, None, :] - x[None, anchors, :], axis=-1).min(axis=1)
    assert set(np.argsort(dist, kind="stable")[:N_NEAR].tolist()) <= set(chosen.tolist())
    # The highest learning rate of each eps_root stratum (32 strata) is kept.
    strata = np.minimum((x[:, 1] * 32).astype(int), 31)
    for s in range(32):
        members = np.flatnonzero(strata == s)
        top = members[np.argsort(-x[members, 0], kind="stable")[:N_EDGE]]
        assert set(top.tolist()) <= set(chosen.tolist())
    # Spread over the box: every quarter of the learning-rate range is represented.
    assert {int(v) for v in np.minimum(x[chosen, 0] * 4, 3)} == {0, 1, 2, 3}


def test_small_jobs_keep_the_full_fit_unchanged() -> None:
    job = synthetic_job(300, seed=2)
    default = recommend(job, status="final")
    assert default.evidence.n_trials_used <= FULL_FIT_MAX_TRIALS
    assert default.evidence.n_trials_fitted == default.evidence.n_trials_used
    assert default.to_dict() == recommend(job, status="final", full_fit_max_trials=FULL).to_dict()
    assert np.array_equal(
        loss_fit_subset(np.zeros((50, 2)), np.zeros(50), np.zeros(50, bool)), np.arange(50)
    )


def test_a_negative_threshold_is_rejected() -> None:
    job: list[TrialOutcome] = synthetic_job(30)
    with pytest.raises(ValueError, match="full_fit_max_trials"):
        recommend(job, status="final", full_fit_max_trials=-1)
