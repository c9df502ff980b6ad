"""The rule study (bench/rules.py): its split summary counts what the quality benchmark counts,
and one real job on a small task, trained once and then read from the cache, gives the same
row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import rules
from bench.suite import suite_tasks


def _row(task: str, mean: float | None, worst: float | None, tpe: float | None, div: int = 0):
    return {"task": task, "split": "validation", "variant": "current", "mean": mean,
            "worst": worst, "tpe_mean": tpe, "diverged": div, "runs": []}  # fmt: skip


def test_the_summary_names_the_worst_task_and_counts_ties_with_plain_tpe_as_wins() -> None:
    rows = [
        _row("a", 1.0, 3.0, 1.0),  # a tie with plain TPE counts as at least as good
        _row("b", 7.5, 9.0, 2.0, div=2),  # worse than plain TPE
        _row("c", -4.0, 12.0, None),  # plain TPE gave no answer
        _row("d", None, None, 0.0),  # no answer of ours: neither a win nor the worst
    ]
    s = rules.summarise(rows)
    assert s["n_tasks"] == 4
    assert s["max_regret_pct"] == 7.5 and s["worst_task"] == "b"
    assert s["worst_run_regret_pct"] == 12.0
    assert s["at_least_as_good_as_tpe"] == 2 and s["share_at_least_as_good_as_tpe"] == 0.5
    assert s["diverged_seeds_at_recommendation"] == 2 and s["no_answer"] == 1
    summary = {
        "runs_per_task": 10,
        "sampler_seeds": list(range(10, 20)),
        "splits": {"validation": s},
    }
    page = rules.markdown({"summary": summary, "tasks": rows})
    assert "| validation | 4 | +7.50 % (b) | +12.00 % | 2/4 | 2 |" in page
    assert "| validation | d | - | - | +0.00 % | 0 |" in page


@pytest.mark.slow
def test_a_job_trained_once_gives_the_same_row_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rules, "CACHE", tmp_path)
    (task,) = suite_tasks(names=["rosenbrock"])

    def once() -> dict[str, Any]:
        (row,) = rules.study([task], [10], ["current"])
        return row

    first = once()
    assert (tmp_path / "rosenbrock.pkl").exists()
    assert first["task"] == "rosenbrock" and first["split"] == "tuning"
    assert len(first["runs"]) == 1 and first["runs"][0]["seed"] == 10
    assert first["mean"] is not None and first["mean"] == first["worst"]
    again = once()
    assert again["mean"] == first["mean"] and again["tpe_mean"] == first["tpe_mean"]
    assert "0 lanes trained" in capsys.readouterr().err  # the second study trained nothing
