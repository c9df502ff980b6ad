"""The warm-start sweep: log-spaced learning rates, at most a decade apart around 1e-3, at both
eps_root levels."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest

from optimizer.acprop import PAPER_EPS_ROOT
from optimizer.space import Fixed, Range, SearchSpace
from optimizer.warm_start import MAX_POINTS, warm_start_configs


def test_an_18_trial_job_sweeps_the_decades_around_the_papers_learning_rate() -> None:
    configs = warm_start_configs(SearchSpace(), 18)
    # 1e-4, 1e-3, 1e-2 at the paper's eps_root; optax's eps_root half a decade higher.
    assert [c["learning_rate"] for c in configs] == pytest.approx(
        [10.0 ** (-4 + k / 2) for k in range(6)]
    )
    assert [c["eps_root"] for c in configs] == [PAPER_EPS_ROOT, 1e-16] * 3
    # The paper's learning rate is swept at eps_root 1e-8 only (a blow-up of 1e-3 at 1e-16
    # would rule 1e-3 out of the recommendation).
    assert [c["eps_root"] for c in configs if math.isclose(c["learning_rate"], 1e-3)] == [
        PAPER_EPS_ROOT
    ]


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (1e-5, 1.0),
        (1e-6, 1e-3),
        (1e-3, 10.0),
        (1e-2, 1.0),
        (1e-7, 1e-5),
        (2e-4, 5e-4),
        (1e-5, 5e-3),
        (3e-4, 1.0),
        (1e-6, 0.05),
        (1.26e-5, 6.3e-3),
        (2e-3, 0.7),
    ],
)
@pytest.mark.parametrize("n_trials", [6, 12, 18, 24, 36, 48, 80])
def test_points_are_at_most_a_decade_apart_inside_the_range_around_1e3(
    low: float, high: float, n_trials: int
) -> None:
    configs = warm_start_configs(SearchSpace(learning_rate=Range(low, high, log=True)), n_trials)
    levels = [
        sorted({c["learning_rate"] for c in configs if c["eps_root"] == level})
        for level in (PAPER_EPS_ROOT, 1e-16)
    ]
    first, second = levels
    # The second level: the same grid moved by less than a step (half a step up where the
    # range has room), so the levels interleave.
    assert len(second) == len(first)
    assert low * (1 - 1e-12) <= second[0] and second[-1] <= high * (1 + 1e-12)
    step = math.log10(first[1] / first[0])
    shifts = [math.log10(b / a) / step for a, b in zip(first, second, strict=True)]
    assert max(shifts) == pytest.approx(min(shifts), abs=1e-9) and abs(shifts[0]) < 1.0
    lrs = first
    assert len(lrs) >= 3
    assert low <= lrs[0] and lrs[-1] <= high
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert max(ratios) <= 10.0 * (1 + 1e-9)
    assert max(ratios) == pytest.approx(min(ratios))  # evenly spaced in log
    if max(ratios) < 10.0 * (1 - 1e-9):  # closer than a decade: the whole range, ends included
        assert math.isclose(lrs[0], low) and math.isclose(lrs[-1], high)
    elif low <= 1e-3 <= high and math.log10(high / low) - (len(lrs) - 1) >= 1.0:
        # A decade apart with a decade to spare: the paper's learning rate is one of them.
        assert min(abs(math.log10(lr) + 3.0) for lr in lrs) < 1e-9
    elif not low <= 1e-3 <= high:  # pushed against the end of the range nearer 1e-3
        assert math.isclose(lrs[0], low) if low > 1e-3 else math.isclose(lrs[-1], high)


@pytest.mark.parametrize(
    ("low", "high", "shift"),
    [
        (1e-5, 1.0, 0.5),  # half a decade up: 3.2e-4, 3.2e-3, 3.2e-2
        (1e-5, 5e-3, 0.5),  # the paper's level moved down a step, this one with it
        (1e-6, 1e-3, -0.5),  # no room above: a whole step down from half a step up
        (1e-3, 1e-1, 0.0),  # the range holds the points with no room: shared
    ],
)
def test_the_second_level_sits_between_the_first_ones_points(
    low: float, high: float, shift: float
) -> None:
    configs = warm_start_configs(SearchSpace(learning_rate=Range(low, high, log=True)), 18)
    first = [c["learning_rate"] for c in configs if c["eps_root"] == PAPER_EPS_ROOT]
    second = [c["learning_rate"] for c in configs if c["eps_root"] == 1e-16]
    assert [b / a for a, b in zip(first, second, strict=True)] == pytest.approx(
        [10.0**shift] * len(first)
    )


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (1e-5, 5e-3, [1e-5, 1e-4, 1e-3]),  # moved down a whole step: 1e-2 is out of range
        (3e-4, 1.0, [1e-3, 1e-2, 1e-1]),  # moved up a whole step
        (1.26e-5, 6.3e-3, [6.3e-5, 6.3e-4, 6.3e-3]),  # no whole step fits: against the end
    ],
)
def test_the_sweep_keeps_1e3_by_moving_whole_steps_where_it_can(
    low: float, high: float, expected: list[float]
) -> None:
    configs = warm_start_configs(SearchSpace(learning_rate=Range(low, high, log=True)), 18)
    paper_level = {c["learning_rate"] for c in configs if c["eps_root"] == PAPER_EPS_ROOT}
    assert sorted(paper_level) == pytest.approx(expected)


def test_a_large_budget_sweeps_the_whole_range_at_both_eps_root_levels() -> None:
    configs = warm_start_configs(SearchSpace(), 64)
    assert len(configs) == 16  # a quarter of the budget
    lrs = sorted({c["learning_rate"] for c in configs})
    assert math.isclose(lrs[0], 1e-5) and math.isclose(lrs[-1], 1.0)
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert max(ratios) == pytest.approx(min(ratios))  # evenly spaced in log
    assert {c["eps_root"] for c in configs} == {1e-16, PAPER_EPS_ROOT}
    assert all(c["b1"] == 0.9 and c["b2"] == 0.999 and c["weight_decay"] == 0.0 for c in configs)
    # Interleaved: the first trials leased already cover both levels.
    assert {c["eps_root"] for c in configs[:2]} == {1e-16, PAPER_EPS_ROOT}


@pytest.mark.parametrize("n_trials", [3, 5, 8, 16, 30, 64, 500])
def test_never_exceeds_the_budget_and_stays_inside_the_space(n_trials: int) -> None:
    space = SearchSpace(
        learning_rate=Range(1e-4, 1e-1, log=True),
        b2=Range(0.99, 0.9999),
        eps_root=Range(1e-12, 1e-6, log=True),
    )
    configs = warm_start_configs(space, n_trials)
    assert 3 <= len(configs) <= min(n_trials, 2 * MAX_POINTS)
    for c in configs:
        assert 1e-4 * (1 - 1e-12) <= c["learning_rate"] <= 1e-1 * (1 + 1e-12)
        assert 0.99 <= c["b2"] <= 0.9999
        assert 1e-12 <= c["eps_root"] <= 1e-6


def test_no_sweep_when_the_learning_rate_is_fixed_or_the_budget_is_tiny() -> None:
    assert warm_start_configs(SearchSpace(learning_rate=Fixed(1e-3)), 64) == []
    assert warm_start_configs(SearchSpace(), 2) == []


def test_fixed_eps_root_gives_one_level() -> None:
    configs = warm_start_configs(SearchSpace(eps_root=Fixed(1e-10)), 64)
    assert {c["eps_root"] for c in configs} == {1e-10}
    assert len(configs) == MAX_POINTS  # a quarter of 64, capped


def test_importing_it_does_not_import_jax() -> None:
    # The service calls it when a job is submitted and must never import jax.
    code = "import sys, optimizer.warm_start; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
