"""The LR range test: fastai's smoothing, stopping and "valley" rule, and one real ramp."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from optimizer.lr_range_finder import (
    ramp,
    smooth,
    stop_index,
    suggest_valley,
    valley_index,
)


def test_ramp_is_exponential_between_the_ends() -> None:
    lrs = ramp(1e-5, 1.0, 101)
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(np.log10(lrs)), 0.05)
    with pytest.raises(ValueError):
        ramp(1.0, 1e-5, 10)


def test_smoothing_is_a_debiased_moving_average() -> None:
    np.testing.assert_allclose(smooth([3.0] * 20), 3.0)  # debiased: no pull towards 0
    # By hand, beta 0.5: a1 = 0.5, a2 = 0.25 + 1.5 = 1.75 -> 0.5 / 0.5 = 1, 1.75 / 0.75.
    np.testing.assert_allclose(smooth([1.0, 3.0], beta=0.5), [1.0, 1.75 / 0.75])


def test_stop_index_follows_fastai() -> None:
    assert stop_index(np.array([4.0, 2.0, 1.0, 3.0, 4.5, 9.0])) == 5  # 4.5 > 4 x 1
    assert stop_index(np.array([4.0, 2.0, math.nan, 1.0])) == 2
    assert stop_index(np.array([3.0, 2.0, 1.0])) == 3


def test_valley_index_by_hand() -> None:
    # fastai's start is one before the valley's first point: a fully decreasing curve of 10
    # gives start = 9 - 10 = -1, sections = 10 / 3, index = -1 + 3 + 1 = 3.
    assert valley_index(list(range(10, 0, -1))) == 3
    # Longest strictly decreasing subsequence: 12 > 11 > 9 > 7 > 5 > 3 > 1 (7 points, ending
    # at index 9), so start = 9 - 7 = 2, sections = 7 / 3, index = 2 + 2 + int(7 / 6) = 5.
    losses = [12.0, 11.0, 12.5, 13.0, 9.0, 7.0, 8.0, 5.0, 3.0, 1.0, 4.0, 20.0]
    assert valley_index(losses) == 5
    with pytest.raises(ValueError):
        valley_index([])


def test_valley_lands_in_the_descent_of_a_typical_curve() -> None:
    lrs = ramp(1e-5, 1.0, 100)
    u = np.log10(lrs)
    # Loss falls from 2.3 as the learning rate grows, bottoms out at 1e-2, then explodes.
    loss = (
        0.3 + 2.0 / (1.0 + np.exp(4.0 * (u + 3.0))) + np.where(u > -2.0, 30.0 * (u + 2.0) ** 2, 0.0)
    )
    smoothed = smooth(loss)
    keep = stop_index(smoothed)
    lr = suggest_valley(lrs[:keep], smoothed[:keep], 100)
    assert 1e-4 < lr < 1e-2  # inside the descent, below the minimum


def test_suggestion_drops_everything_after_a_nan() -> None:
    lrs = ramp(1e-5, 1.0, 100)
    smoothed = np.linspace(3.0, 1.0, 100)
    smoothed[60:] = math.nan
    lr = suggest_valley(lrs, smoothed, 100)
    assert lrs[10] <= lr < lrs[60]


def test_importing_does_not_import_jax() -> None:
    code = "import sys, optimizer.lr_range_finder; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_range_test_on_a_real_task() -> None:
    from optimizer.lr_range_finder import run_range_test
    from optimizer.tasks import load_task

    test = run_range_test(
        load_task("logreg-breast-cancer", {}), num_it=100, hyperparameters={"eps_root": 1e-8}
    )
    assert 10 < test.lrs.size <= 100
    assert np.isfinite(test.smoothed).all()
    assert test.lrs[0] <= test.suggestion <= test.lrs[-1]
    # Training moved: the smoothed loss fell below its start somewhere along the ramp.
    assert test.smoothed.min() < test.smoothed[0]
