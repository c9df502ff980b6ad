"""The confirmation stage (optimizer/tuning/confirmation.py) and the choice among its
candidates (optimizer/recommendation), and the divergence edge per eps_root: on synthetic
jobs whose loss and edge are known."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from optimizer.recommendation import TrialOutcome, recommend
from optimizer.recommendation._divergence_model import DivergenceModel
from optimizer.recommendation._features import FeatureSpace
from optimizer.tuning.confirmation import (
    DOWN,
    UP,
    candidates,
    confirmation_seeds,
    confirmation_trials,
)


def loss_at(lr: float, best: float) -> float:
    return 1.0 + 0.1 * (math.log10(lr) - math.log10(best)) ** 2


def job(lrs: list[float], best: float, edge: float, *, seeds: int = 2) -> list[TrialOutcome]:
    out = []
    for n, lr in enumerate(lrs):
        diverged = lr > edge
        losses = tuple(None if diverged else loss_at(lr, best) + 0.002 * s for s in range(seeds))
        out.append(TrialOutcome(n, {"learning_rate": lr}, losses, (diverged,) * seeds))
    return out


def test_small_jobs_do_not_confirm_and_the_seeds_are_fresh() -> None:
    assert confirmation_trials(11) == 0 and confirmation_trials(12) == 3
    assert confirmation_trials(1000) == 3
    assert confirmation_seeds(2) == (2, 3) and set(confirmation_seeds(3)).isdisjoint(range(3))


def test_an_answer_at_a_limit_is_probed_above_and_below() -> None:
    # Still improving at the largest learning rate that trained (1e-2, the range's end).
    trials = job([10.0**u for u in np.linspace(-5, -2, 12)], best=1e-1, edge=1.0)
    rec = recommend(trials, status="provisional")
    assert rec.bounded_by in ("range", "evidence")
    base, up, down = candidates(trials, 3, lr_high=1.0)
    assert base["learning_rate"] == rec.learning_rate
    assert up["learning_rate"] == pytest.approx(rec.learning_rate * UP, rel=0.05)
    assert down["learning_rate"] == pytest.approx(rec.learning_rate / DOWN, rel=0.05)
    # Never above the range's end.
    assert candidates(trials, 3, lr_high=rec.learning_rate * 1.2)[1]["learning_rate"] <= (
        rec.learning_rate * 1.2 * 1.01
    )


def test_an_answer_at_the_loss_minimum_is_probed_below_only() -> None:
    trials = job([10.0**u for u in np.linspace(-5, 0, 16)], best=1e-3, edge=3e-1)
    rec = recommend(trials, status="provisional")
    assert rec.bounded_by == "loss"
    got = candidates(trials, 3)
    assert len(got) == 2 and got[1]["learning_rate"] < got[0]["learning_rate"]
    assert candidates(job([1e-3, 2e-3], best=1e-3, edge=1.0), 3) == []  # no answer yet


def _confirm(
    base: list[TrialOutcome], configs: list[float], losses: list[float | None]
) -> list[TrialOutcome]:
    extra = [
        TrialOutcome(
            100 + i,
            {"learning_rate": lr},
            (loss, loss) if loss is not None else (None, None),
            (loss is None,) * 2,
            confirmation=True,
        )
        for i, (lr, loss) in enumerate(zip(configs, losses, strict=True))
    ]
    return base + extra


def test_the_answer_is_the_candidate_that_measured_best_on_the_fresh_seeds() -> None:
    base = job([10.0**u for u in np.linspace(-5, -2, 12)], best=1e-1, edge=1.0)
    rec = recommend(_confirm(base, [1e-2, 2.5e-2, 5e-3], [1.02, 1.01, 1.05]), status="final")
    assert rec.learning_rate == pytest.approx(2.5e-2) and rec.bounded_by == "confirmation"
    # A candidate with a diverged seed is never the answer, however good its other seeds.
    rec = recommend(_confirm(base, [1e-2, 2.5e-2, 5e-3], [1.02, None, 1.05]), status="final")
    assert rec.learning_rate == pytest.approx(1e-2)
    # The answer's risk counts the fresh seeds at and just above it.
    assert rec.risk is not None and rec.risk.n_diverged >= 2


def _noisy(base: list[TrialOutcome], spread: float) -> list[TrialOutcome]:
    """The job's trials with their two seeds ``spread`` apart (pooled seed sd ~ spread/1.4)."""
    return [
        TrialOutcome(t.number, t.params, (t.losses[0], t.losses[0] + spread), t.diverged)
        if t.losses[0] is not None
        else t
        for t in base
    ]


def test_the_trials_answer_stands_unless_a_candidate_beats_it_beyond_the_seed_noise() -> None:
    base = job([10.0**u for u in np.linspace(-5, -2, 12)], best=1e-1, edge=1.0)
    noisy = _noisy(base, 0.3)  # seed sd about 0.21: a standard error of 0.21 over 2 seeds
    # 0.05 better on the fresh seeds: within the noise, the first candidate (the trials'
    # answer) stands ...
    rec = recommend(_confirm(noisy, [1e-2, 2.5e-2, 5e-3], [1.05, 1.00, 1.10]), status="final")
    assert rec.learning_rate == pytest.approx(1e-2) and rec.bounded_by == "confirmation"
    # ... 0.4 better is beyond it: the candidate that measured best is the answer.
    rec = recommend(_confirm(noisy, [1e-2, 2.5e-2, 5e-3], [1.45, 1.05, 1.40]), status="final")
    assert rec.learning_rate == pytest.approx(2.5e-2)
    # Without seed noise any measured difference decides (the test above).
    rec = recommend(_confirm(base, [1e-2, 2.5e-2, 5e-3], [1.05, 1.00, 1.10]), status="final")
    assert rec.learning_rate == pytest.approx(2.5e-2)


def test_a_first_candidate_that_diverged_leaves_the_best_measured_of_the_others() -> None:
    noisy = _noisy(job([10.0**u for u in np.linspace(-5, -2, 12)], best=1e-1, edge=1.0), 0.3)
    rec = recommend(_confirm(noisy, [1e-2, 2.5e-2, 5e-3], [None, 1.09, 1.10]), status="final")
    assert rec.learning_rate == pytest.approx(2.5e-2)


def test_the_edge_is_modelled_per_eps_root() -> None:
    """Blow-ups at optax's eps_root (above 3e-4) do not cap eps_root 1e-8, whose trials train
    up to 3e-2 and diverge at 1e-1: its edge stays between those, the tiny eps_root's near
    its own blow-ups."""
    params, seen, div = [], [], []
    for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2):
        params.append({"learning_rate": lr, "eps_root": 1e-16})
        seen.append(2), div.append(2 if lr > 3e-4 else 0)
    for lr in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1):
        params.append({"learning_rate": lr, "eps_root": 1e-8})
        seen.append(2), div.append(2 if lr > 3e-2 else 0)
    space = FeatureSpace.from_params(params)
    x = space.to_unit(params)
    model = DivergenceModel.fit(
        x, np.array(seen, float), np.array(div, float), radius=0.05, rising=np.array([True])
    )
    z_paper = space.to_unit([{"learning_rate": 1e-3, "eps_root": 1e-8}])[:, 1:]
    z_optax = space.to_unit([{"learning_rate": 1e-3, "eps_root": 1e-16}])[:, 1:]
    edge_paper = space.unit_to_lr(float(model.edge(z_paper)[0]))
    edge_optax = space.unit_to_lr(float(model.edge(z_optax)[0]))
    assert 3e-2 <= edge_paper <= 1e-1
    assert 3e-4 <= edge_optax <= 1e-3
    assert model.safe_support(z_paper)[0] == pytest.approx(space.lr_to_unit(3e-2))


def test_the_divergence_probability_far_from_the_edge_is_exact_and_silent() -> None:
    """Far below the edge exp(-t) overflows to inf, and 1 / (1 + inf) = 0 is the right limit:
    no RuntimeWarning reaches a user's log (one came from every fit of some suite tasks)."""
    x = np.array([[0.0], [0.3], [0.6], [1.0]])
    model = DivergenceModel.fit(x, np.full(4, 2.0), np.array([0.0, 0.0, 2.0, 2.0]), radius=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = model.probability(np.array([[-1e3], [1e3]]))
    assert far.tolist() == [0.0, 1.0]
