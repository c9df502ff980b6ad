"""The development suite (bench/suite.py): its size, its fixed split, its stored references,
and that a stored reference is what the script computes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.suite import (
    EPS_ROOT_LINES,
    EVAL_SEEDS,
    GRID_POINTS,
    GRID_SEEDS,
    GRID_STEP,
    SUITE,
    compute_reference,
    grid_learning_rates,
    reference,
    resolution,
    suite_tasks,
)
from optimizer.tasks import task_names

BUILTIN = ("rosenbrock", "mlp-digits", "logreg-breast-cancer", "char-lm", "cnn-digits",
           "mlp-mnist1d")  # fmt: skip


def test_the_suite_is_large_split_in_two_and_holds_the_builtin_tasks() -> None:
    names = [t.name for t in SUITE]
    assert len(names) >= 24 and len(set(names)) == len(names)
    tuning, validation = suite_tasks("tuning"), suite_tasks("validation")
    assert len(tuning) >= 12 and len(validation) >= 12
    assert len(tuning) + len(validation) == len(SUITE)
    assert set(BUILTIN) <= set(names) and set(BUILTIN) <= set(task_names())
    with pytest.raises(KeyError, match="no suite task"):
        suite_tasks(names=["no-such-task"])


@pytest.mark.parametrize("task", SUITE, ids=lambda t: t.name)
def test_every_task_builds_and_has_its_stored_reference(task) -> None:  # type: ignore[no-untyped-def]
    built = task.build()
    ref = reference(task.name)
    assert ref["steps"] == built.meta.default_steps and ref["n_params"] == built.meta.n_params
    assert set(ref["grid"]) == {f"{e:g}" for e in EPS_ROOT_LINES}
    for rows in ref["grid"].values():
        assert [r["learning_rate"] for r in rows] == pytest.approx(grid_learning_rates())
        assert len(rows) == GRID_POINTS
        assert all(len(r["losses"]) == len(GRID_SEEDS) for r in rows)
    # The best is the lowest mean over the safe rows at eps_root 1e-8.
    safe = [
        r for r in ref["grid"][f"{EPS_ROOT_LINES[0]:g}"]
        if not any(r["diverged"]) and None not in r["losses"]
    ]  # fmt: skip
    best = min(safe, key=lambda r: float(np.mean(r["losses"])))
    assert ref["best_learning_rate"] == best["learning_rate"]
    assert len(ref["eval_losses"]) == len(EVAL_SEEDS) == len(ref["eval_diverged"])
    assert all(v is None or math.isfinite(v) for v in ref["eval_losses"])


def test_a_stored_reference_is_what_the_script_computes() -> None:
    (task,) = suite_tasks(names=["rosenbrock"])
    stored, fresh = reference("rosenbrock"), compute_reference(task.build())
    assert fresh["best_learning_rate"] == stored["best_learning_rate"]
    assert fresh["eval_losses"] == pytest.approx(stored["eval_losses"], rel=1e-4)


@pytest.mark.parametrize("task", SUITE, ids=lambda t: t.name)
def test_the_resolution_reads_the_grid_around_its_best(task) -> None:  # type: ignore[no-untyped-def]
    r = resolution(task.name)
    lrs = grid_learning_rates()
    best = lrs.index(reference(task.name)["best_learning_rate"])
    down, up = r["step_regret_pct"]
    # The neighbours of the grid's best are no better than it (None past the grid's end).
    assert (down is None) == (best == 0) and (up is None) == (best == len(lrs) - 1)
    assert all(v is None or v >= 0.0 for v in (down, up))
    assert lrs[1] / lrs[0] == pytest.approx(GRID_STEP) == lrs[-1] / lrs[-2]
    assert len(r["per_seed_best_lr"]) == len(GRID_SEEDS) and set(r["per_seed_best_lr"]) <= set(lrs)
    assert r["eval_cv_pct"] >= 0.0 and math.isfinite(r["eval_cv_pct"])
