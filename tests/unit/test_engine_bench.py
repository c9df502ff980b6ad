"""The benchmark runner: results files and docs/benchmarks.md (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as runner
from bench import BENCHMARKS, engine


def _result() -> dict[str, object]:
    variant = {
        "trials_per_s": 2.0,
        "gflop_per_s": 1.0,
        "fraction_of_matmul_ceiling": 0.01,
        "backend_compiles": 4,
    }
    population = {**variant, "variant": "population K=8", "compile_s": 1.5, "trials_per_s": 40.0}
    population["backend_compiles"] = 0
    return {
        "name": "engine",
        "title": engine.TITLE,
        "workload": {
            "task": "mlp-digits",
            "task_options": {},
            "n_params": 13770,
            "steps_per_trial": 300,
            "reports_per_trial": 20,
            "flops_per_step": 9.8e6,
        },
        "matmul_ceiling_gflop_per_s": 100.0,
        "variants": [{**variant, "variant": "naive"}, population],
        "summary": {
            "naive_trials_per_s": 2.0,
            "best_population": "population K=8",
            "best_population_trials_per_s": 40.0,
            "speedup_vs_naive": 20.0,
            "recompiles_after_first": 0,
            "traces_after_first": 0,
            "target_speedup": 15,
        },
        "machine": {"cpu_count": 2, "jax_backend": "cpu"},
        "ran_at": "2026-01-01 00:00 UTC",
    }


def test_page_is_written_from_every_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "engine.json").write_text(json.dumps(_result()))
    (results / "other.json").write_text(json.dumps({"summary": {"answer": 42}}))
    monkeypatch.setattr(runner, "RESULTS", results)
    monkeypatch.setattr(runner, "PAGE", tmp_path / "benchmarks.md")
    runner.write_page()
    page = (tmp_path / "benchmarks.md").read_text()
    assert "## Engine: trials per second" in page
    assert "| population K=8 | 40.00 | 1.50 |" in page
    assert "Speedup vs naive: 20.0x" in page
    assert '"answer": 42' in page  # a result without a bench module still appears


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "engine" in BENCHMARKS
    with pytest.raises(SystemExit):
        runner.main(["nope"])
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_committed_engine_results_have_the_required_figures() -> None:
    path = Path(runner.RESULTS) / "engine.json"
    result = json.loads(path.read_text())
    variants = {v["variant"] for v in result["variants"]}
    assert variants == {"naive"} | {f"population K={k}" for k in engine.POPULATION_SIZES}
    assert {"speedup_vs_naive", "recompiles_after_first"} <= set(result["summary"])
    assert {"cpu_count", "jax_backend"} <= set(result["machine"])
