"""The answer's divergence risk (optimizer/recommendation/_risk.py) and what set it
(`bounded_by`): on synthetic problems with a known per-seed blow-up rate, the upper bound
covers the true rate in at least 95 % of draws; only comparable, at-least-as-risky trials
count; and the answer says which limit set its learning rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.recommendation import TrialOutcome, recommend
from optimizer.recommendation._risk import (
    CONFIDENCE,
    MIN_SEEDS,
    clopper_pearson_upper,
    divergence_risk,
)

NO_RISING = np.zeros(1, dtype=bool)
RISING = np.ones(1, dtype=bool)


def _risk_of(points: list[tuple[float, float]], seeds: list[int], diverged: list[int]):  # type: ignore[no-untyped-def]
    return divergence_risk(
        np.array(points),
        np.array(seeds, dtype=float),
        np.array(diverged, dtype=float),
        np.array([0.5, 0.5]),
        band=0.1,
        radius=0.05,
        rising=RISING,
        model_probability=0.01,
    )


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("n_trials", [2, 5, 15])
def test_the_bound_covers_a_known_per_seed_rate_in_95_percent_of_draws(
    rate: float, n_trials: int
) -> None:
    """Trials at and just above the answer's learning rate (same eps_root), 2 seeds each,
    every seed diverging with probability ``rate``: the reported bound is at least the rate
    in >= 95 % of 1,000 draws, and the estimate is near it when many seeds were seen."""
    rng = np.random.default_rng(int(rate * 1000) + n_trials)
    covered, estimates = 0, []
    for _ in range(1000):
        points = [(0.5 + 0.1 * rng.random(), 0.5) for _ in range(n_trials)]
        diverged = list(rng.binomial(2, rate, n_trials))
        risk = _risk_of(points, [2] * n_trials, diverged)
        covered += risk.upper_bound >= rate
        estimates.append(risk.probability)
        assert risk.n_seeds == 2 * n_trials and risk.thin == (2 * n_trials < MIN_SEEDS)
    assert covered / 1000 >= CONFIDENCE
    if n_trials == 15:
        assert abs(float(np.mean(estimates)) - rate) < 0.03


def test_only_comparable_and_at_least_as_risky_trials_count() -> None:
    points = [
        (0.55, 0.5),  # just above the answer's learning rate: counts
        (0.45, 0.5),  # below it: less risky, does not count
        (0.70, 0.5),  # beyond the band: does not count
        (0.55, 0.70),  # higher eps_root (rising): less risky, does not count
        (0.55, 0.20),  # lower eps_root: at least as risky, counts
    ]
    risk = _risk_of(points, [2, 2, 2, 2, 2], [1, 2, 2, 2, 0])
    assert (risk.n_seeds, risk.n_diverged) == (4, 1)
    assert risk.probability == pytest.approx(1.5 / 5)
    assert risk.upper_bound == pytest.approx(clopper_pearson_upper(4, 1))


def test_without_evidence_the_model_estimates_and_the_bound_is_one() -> None:
    risk = _risk_of([(0.2, 0.5)], [2], [0])
    assert risk.n_seeds == 0 and risk.upper_bound == 1.0 and risk.thin
    assert risk.probability == pytest.approx(0.01)


@pytest.mark.parametrize(("n", "d"), [(4, 0), (10, 0), (30, 0), (20, 3)])
def test_clopper_pearson_matches_its_closed_form_without_failures(n: int, d: int) -> None:
    upper = clopper_pearson_upper(n, d)
    if d == 0:  # the exact bound is 1 - (1 - confidence)^(1/n)
        assert upper == pytest.approx(1 - (1 - CONFIDENCE) ** (1 / n))
    assert d / n < upper < 1


def _job(u_star: float, edge_u: float | None) -> list[TrialOutcome]:
    """Learning rates 1e-5 .. 1 (eps_root fixed), 3 seeds each, a quadratic loss in log lr
    with its minimum at ``u_star``; seeds diverge above ``edge_u``."""
    out = []
    for n, u in enumerate(np.linspace(-5.0, 0.0, 24)):
        diverged = edge_u is not None and u > edge_u
        loss = 1.0 + 0.1 * (u - u_star) ** 2
        losses = tuple(None if diverged else loss + 0.001 * s for s in range(3))
        out.append(TrialOutcome(n, {"learning_rate": 10.0**u}, losses, (diverged,) * 3))
    return out


def test_the_answer_names_what_set_its_learning_rate() -> None:
    by_loss = recommend(_job(-3.0, -1.0), status="final")
    assert by_loss.bounded_by == "loss"
    by_edge = recommend(_job(-0.5, -2.0), status="final")  # optimum beyond the edge
    assert by_edge.bounded_by in ("edge", "evidence")
    assert by_edge.learning_rate <= 10.0**-2.0
    by_range = recommend(_job(2.0, None), status="final")  # still falling at the range's end
    assert by_range.bounded_by == "range"
    for rec in (by_loss, by_edge, by_range):
        assert rec.risk is not None
        assert 0.0 <= rec.risk.probability <= rec.risk.upper_bound <= 1.0
        lo, hi = rec.lr_interval
        assert lo <= rec.learning_rate <= hi
    # Next to the edge, with diverged seeds just above: the risk counts them.
    assert by_edge.risk is not None and by_loss.risk is not None
    assert by_edge.risk.probability >= by_loss.risk.probability
    assert math.isfinite(by_edge.risk.upper_bound)


def test_the_text_names_the_bound_and_the_risk() -> None:
    from optimizer.recommendation.text import describe

    by_edge = recommend(_job(-0.5, -2.0), status="final").to_dict()
    text = describe(by_edge)
    assert "set by: the divergence edge" in text or "set by: the evidence" in text
    assert "divergence risk of a fresh seed: about" in text
    assert f"{by_edge['risk']['confidence']:.0%} bound" in text
    # The edge's distance is the one measured, not a promise of "a factor 2 or more".
    edge = by_edge["divergence_lr"]
    assert f"({edge / by_edge['learning_rate']:.3g}x the recommendation)" in text
    thin = {**by_edge, "risk": {**by_edge["risk"], "n_seeds": 4, "n_diverged": 0, "thin": True}}
    assert "the evidence is thin" in describe(thin)
    over = {**by_edge, "risk": {**by_edge["risk"], "n_seeds": 40, "meets_target": False}}
    assert "above the 5% aimed for" in describe(over)
    assert "no seed measured it" in describe(
        {**by_edge, "risk": {**by_edge["risk"], "n_seeds": 0, "n_diverged": 0}}
    )
