"""The quality benchmark on the development suite (bench/recommendation.py), run on one small
task with one sampler seed: every method is scored and the split summary has the keys
issue 16 names. No figure is asserted beyond what must hold."""

from __future__ import annotations

import pytest

from bench import recommendation as quality
from bench.suite import EVAL_SEEDS, suite_tasks


@pytest.mark.slow
def test_one_task_is_scored_by_every_method_and_summarised_per_split() -> None:
    (task,) = suite_tasks(names=["rosenbrock"])
    row = quality._task(task, 1)
    assert row["split"] == "tuning" and row["sampler_seeds"] == [quality.SAMPLER_SEEDS[0]]
    assert set(quality.METHODS) | {"reference"} == set(row["scores"])
    ours = row["scores"]["ours"]
    assert len(ours["runs"]) == 1 and ours["evaluated_seeds"] in (0, len(EVAL_SEEDS))
    assert (ours["regret_pct"] is None) == (ours["runs"][0]["mean_validation_loss"] is None)
    summary = quality._split_summary([row])
    for key in ("max_regret_pct", "worst_run_regret_pct", "share_at_least_as_good_as_tpe",
                "diverged_seeds_at_recommendation", "risk_covered"):  # fmt: skip
        assert key in summary
    assert 0.0 <= summary["risk_covered"] <= 1.0
    run_summary = {"splits": {"tuning": summary}, "sampler_seeds": [10], "wall_s": 1.0}
    page = quality.markdown({"summary": run_summary, "tasks": [row]})
    assert "| rosenbrock |" in page and "Summary (tuning)" in page
    # A stored result from before the suite renders as a pointer, not a crash.
    assert "predates the development suite" in quality.markdown({"summary": {"max": 1}})
