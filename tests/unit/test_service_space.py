"""The search-space domain model (optimizer.space): ACProp's rules, the defaults, Optuna."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import FloatDistribution

from optimizer.space import DEFAULT_SPACE, Fixed, Range, SearchSpace, SpaceError


def test_default_space() -> None:
    assert DEFAULT_SPACE.to_dict() == {
        "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
        "b1": {"value": 0.9},
        "b2": {"value": 0.999},
        "eps": {"value": 1e-16},
        "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
        "weight_decay": {"value": 0.0},
    }
    assert DEFAULT_SPACE.searched == ("learning_rate", "eps_root")
    assert DEFAULT_SPACE.distributions() == {
        "learning_rate": FloatDistribution(1e-5, 1.0, log=True),
        "eps_root": FloatDistribution(1e-16, 1e-6, log=True),
    }


@pytest.mark.parametrize(
    ("field", "entry", "words"),
    [
        ("learning_rate", Fixed(0.0), "> 0"),
        ("learning_rate", Range(-1.0, 1.0), "> 0"),
        ("b1", Fixed(1.0), "[0, 1)"),
        ("b2", Range(0.9, 1.0), "[0, 1)"),
        ("b1", Fixed(-0.1), "[0, 1)"),
        ("eps", Fixed(-1e-8), ">= 0"),
        ("eps_root", Range(0.0, 1e-6, log=True), "log range"),
        ("weight_decay", Fixed(math.nan), "finite"),
        ("eps_root", Fixed(math.inf), "finite"),
        ("learning_rate", Range(1e-2, 1e-3), "low must be < high"),
        ("learning_rate", Range(1e-3, 1e-3), "low must be < high"),
    ],
)
def test_rules_name_the_field(field: str, entry: Fixed | Range, words: str) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace(**{field: entry})  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)


def test_edges_that_are_allowed() -> None:
    space = SearchSpace(
        b1=Fixed(0.0), eps=Fixed(0.0), eps_root=Range(0.0, 1e-6), weight_decay=Range(0.0, 0.1)
    )
    assert space.fixed["b1"] == 0.0
    assert space.searched == ("learning_rate", "eps_root", "weight_decay")


def test_round_trip_and_config() -> None:
    space = SearchSpace.from_dict({"b2": {"low": 0.9, "high": 0.9999}, "eps": {"value": 1e-8}})
    assert SearchSpace.from_dict(space.to_dict()) == space
    config = space.config({"learning_rate": 3e-3, "eps_root": 1e-8, "b2": 0.99})
    assert config == {
        "learning_rate": 3e-3,
        "b1": 0.9,
        "b2": 0.99,
        "eps": 1e-8,
        "eps_root": 1e-8,
        "weight_decay": 0.0,
    }
    assert all(type(v) is float for v in config.values())


@pytest.mark.parametrize(
    "data",
    [
        {"momentum": {"value": 0.9}},
        {"b1": {"value": 0.9, "low": 0.1, "high": 0.2}},
        {"b1": {"low": 0.1}},
    ],
)
def test_from_dict_rejects_malformed(data: dict[str, dict[str, float]]) -> None:
    with pytest.raises(SpaceError):
        SearchSpace.from_dict(data)
