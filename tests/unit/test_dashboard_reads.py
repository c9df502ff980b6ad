"""The pure parts behind the dashboard's reads: thinning a long curve, a worker's seconds per
population, the throttle on worker sightings, and parameter importance on a known problem."""

from __future__ import annotations

import itertools
import math
import random
import uuid

import pytest

from optimizer.space import Fixed, Range, SearchSpace
from optimizer.tuning.importance import (
    MAX_TRIALS,
    FinishedTrial,
    NotEnoughTrials,
    param_importances,
)
from service.broker.workers import Finished, Sightings
from service.trial_feed import _thin


def test_thinning_keeps_both_ends_and_at_most_the_bound() -> None:
    assert _thin(list(range(10)), 200) == list(range(10))
    thinned = _thin(list(range(1_000)), 200)
    assert len(thinned) == 200 and thinned[0] == 0 and thinned[-1] == 999
    assert thinned == sorted(set(thinned))
    gaps = {b - a for a, b in itertools.pairwise(thinned)}
    assert gaps <= {5, 6}  # evenly spaced


def test_a_population_counts_its_compile_time_once() -> None:
    done = Finished(trials=3, wall_s=[2.0, 5.0, None], compile_s=[1.5, 1.5, 1.5])
    assert done.seconds() == (1.5, 3.5)
    assert Finished(trials=1).seconds() == (0.0, 0.0)
    # A lane that ended before a later compilation: never negative training.
    assert Finished(trials=1, wall_s=[1.0], compile_s=[2.0]).seconds() == (2.0, 0.0)


def test_sightings_are_written_at_most_every_period() -> None:
    tenant = uuid.uuid4()
    sightings = Sightings(every_s=3600)
    assert sightings.due(tenant, ["a", "b", "a"]) == ["a", "b"]
    assert sightings.due(tenant, ["a", "c"]) == ["c"]
    assert sightings.due(uuid.uuid4(), ["a"]) == ["a"]  # per tenant
    assert Sightings(every_s=0).due(tenant, ["a"]) == ["a"]


def _space(*tuned: str) -> SearchSpace:
    ranges = {"learning_rate": Range(1e-5, 1.0, log=True), "b1": Range(0.8, 0.99, log=False)}
    entries = {name: ranges[name] if name in tuned else Fixed(0.9) for name in ranges}
    return SearchSpace(**entries, eps_root=Fixed(1e-8))


def test_importance_finds_the_setting_the_loss_depends_on() -> None:
    rng = random.Random(0)
    trials = []
    for _ in range(200):
        lr, b1 = 10 ** rng.uniform(-5, 0), rng.uniform(0.8, 0.99)
        diverged = lr > 0.05
        value = None if diverged else 0.1 + (math.log10(lr) + 2.5) ** 2
        trials.append(
            FinishedTrial({"learning_rate": lr, "b1": b1}, value, 7 if diverged else None)
        )
    found = param_importances(_space("learning_rate", "b1"), trials, steps=100)
    assert list(found.values) == ["learning_rate", "b1"]
    assert found.values["learning_rate"] > 0.8
    assert sum(found.values.values()) == pytest.approx(1.0)
    assert found.evaluator == "PED-ANOVA" and found.n_trials == 200
    # Out-of-range and incomplete trials are left out.
    odd = [FinishedTrial({"learning_rate": 5.0, "b1": 0.9}, 1.0), FinishedTrial({"b1": 0.9}, 1.0)]
    assert param_importances(_space("learning_rate", "b1"), trials + odd, steps=100).n_trials == 200


def test_importance_needs_two_tuned_settings_and_enough_trials() -> None:
    few = [FinishedTrial({"learning_rate": 1e-3, "b1": 0.9}, 1.0)] * 5
    with pytest.raises(NotEnoughTrials, match="tunes one"):
        param_importances(_space("learning_rate"), few * 4, steps=10)
    with pytest.raises(NotEnoughTrials, match="at least 10"):
        param_importances(_space("learning_rate", "b1"), few, steps=10)


def test_importance_reads_at_most_a_thousand_trials_spread_over_the_job() -> None:
    rng = random.Random(1)
    trials = [
        FinishedTrial(
            {"learning_rate": 10 ** rng.uniform(-5, 0), "b1": rng.uniform(0.8, 0.99)},
            rng.random(),
            number=n,
        )
        for n in range(2_500)
    ]
    found = param_importances(_space("learning_rate", "b1"), trials, steps=10)
    assert found.n_trials == MAX_TRIALS
    assert param_importances(_space("learning_rate", "b1"), trials[:MAX_TRIALS], steps=10)
