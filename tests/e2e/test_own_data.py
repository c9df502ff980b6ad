"""Bring your own data (issue 17), with real processes on Postgres: a user uploads an .npz with
`acprop-tuner datasets upload`, a job names a built-in family (`mlp`) and the data set by its
hash, a real `acprop-tuner worker` fetches the data set over HTTP with its worker key (once,
for every population it trains) and trains on it, and the recommendation comes back."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from tests.support.datasets import npz, tabular
from tests.support.processes import run_cli
from tests.support.stack import Stack

BUDGET = {"n_trials": 8, "steps": 40, "seeds": 1, "report_every": 20}
LOW, HIGH = 1e-4, 1.0


def _answered(metrics: str, method: str, route: str) -> float:
    """How many requests to ``route`` the server answered 200, from its /metrics."""
    pattern = (
        rf'acprop_tuner_http_requests_total\{{method="{method}",route="{re.escape(route)}",'
        r'status="200"\} ([0-9.e+]+)'
    )
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_a_worker_trains_on_an_uploaded_data_set_and_the_recommendation_comes_back(
    make_stack,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    stack: Stack = make_stack()
    path = tmp_path / "train.npz"
    path.write_bytes(npz(**tabular(rows=200, features=6, classes=3)))
    env = {**stack.base_env, "ACPROP_TUNER_TOKEN": stack.user_key}
    sha = run_cli(["datasets", "upload", str(path), "--server", stack.server.url], env).strip()
    assert re.fullmatch("[0-9a-f]{64}", sha), sha

    job_id = stack.submit(
        {"name": "mlp", "options": {"dataset": sha, "widths": [16], "batch_size": 32}},
        budget=BUDGET,
        space={"learning_rate": {"low": LOW, "high": HIGH, "log": True}},
    )
    cache = tmp_path / "dataset-cache"
    worker = stack.worker(
        "w",
        "--capacity", "3", "--idle-exit", "30",
        env={"ACPROP_TUNER_DATASET_CACHE_DIR": str(cache)},
    )  # fmt: skip
    worker.start()
    job = stack.wait_finished(job_id, timeout_s=300)
    assert job["status"] == "finished", stack.diagnostics(job_id)
    progress = job["progress"]
    assert progress["complete"] + progress["diverged"] == BUDGET["n_trials"], progress
    assert progress["failed"] == 0

    with stack.http() as http:
        r = http.get(f"/api/v1/jobs/{job_id}/recommendation")
        assert r.status_code == 200, r.text
        rec = r.json()
        trials = http.get(f"/api/v1/jobs/{job_id}/trials").json()["trials"]
        metrics = http.get("/metrics").text
    lr = rec["learning_rate"]
    assert math.isfinite(lr) and LOW <= lr <= HIGH, rec
    assert rec["status"] == "final" and "optax.contrib.acprop(" in rec["optax"]
    # The losses are cross-entropies of this data set's 3 classes: ln 3 ~ 1.1 at the start.
    finals = [t["value"] for t in trials if t["state"] == "complete"]
    assert finals and min(finals) < 1.0

    # The worker trained several populations (K = 3: one completion call each) and fetched
    # the data set once for all of them.
    assert _answered(metrics, "POST", "/api/v1/leases/complete") >= 3
    assert _answered(metrics, "GET", "/api/v1/worker/datasets/{sha256}") == 1.0
    cached = cache / f"{sha}.npz"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert "Traceback" not in stack.server.log_tail(100_000)
