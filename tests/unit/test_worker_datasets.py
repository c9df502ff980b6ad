"""A worker on a user's data set, against a real HTTP server (the in-memory broker of
tests/support/fake_broker.py) and training for real: it fetches the data set once for every
population of a job, keeps it in its cache directory for the next process, checks every copy
against the hash (a damaged cache file or wrong bytes from the server are never trained on),
fails the trials with the reason when the data set cannot be had, gives them back when the
server is down, and keeps the cache within its bound."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from optimizer.datasets import Limits, PreparedUpload, prepare_upload
from tests.support.datasets import npz, tabular
from tests.support.fake_broker import FakeBroker, serve
from worker.client import RetryPolicy, WorkerClient
from worker.datasets import DatasetCache, DatasetUnavailable
from worker.loop import WorkerLoop, WorkerOptions

CONFIG = {"learning_rate": 1e-2, "eps_root": 1e-8}


def upload(seed: int = 0) -> PreparedUpload:
    return prepare_upload(io.BytesIO(npz(**tabular(seed=seed))), Limits())


def broker(sha256: str, n_trials: int = 5) -> FakeBroker:
    task = {
        "name": "mlp",
        "options": {"dataset": sha256, "widths": [8], "activation": "relu", "batch_size": 16},
    }
    configs = [dict(CONFIG, learning_rate=1e-3 * (i + 1)) for i in range(n_trials)]
    return FakeBroker(configs, task=task, steps=20, report_every=10, seeds=[0])


def run_worker(url: str, cache: Path, capacity: int = 2, cache_bytes: int = 10**9) -> WorkerLoop:
    client = WorkerClient(url, "wk_test", retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.02))
    options = WorkerOptions(
        "w-test",
        capacity=capacity,
        idle_exit_s=0.3,
        dataset_cache_dir=cache,
        dataset_cache_bytes=cache_bytes,
    )
    loop = WorkerLoop(client, options, stop=threading.Event())
    assert loop.run() == 0
    return loop


def gets(fb: FakeBroker) -> int:
    return sum(1 for path, _ in fb.calls if path.startswith("/api/v1/worker/datasets/"))


def test_one_download_serves_every_population_and_the_next_process(tmp_path: Path) -> None:
    data = upload()
    fb = broker(data.sha256)
    fb.datasets[data.sha256] = data.blob
    with serve(fb) as url:
        loop = run_worker(url, tmp_path)
    assert [t.state for t in fb.trials] == ["finished"] * 5
    assert len(fb.calls_to("/api/v1/leases/complete")) == 3  # three populations of K = 2
    assert gets(fb) == 1 and loop.datasets.downloads == 1
    assert all(t.result and all(v is not None for v in t.result["final_losses"]) for t in fb.trials)
    cached = tmp_path / f"{data.sha256}.npz"
    assert cached.read_bytes() == data.blob

    again = broker(data.sha256)  # a new worker process: the copy on disk, no download
    again.datasets[data.sha256] = data.blob
    with serve(again) as url:
        run_worker(url, tmp_path)
    assert [t.state for t in again.trials] == ["finished"] * 5 and gets(again) == 0

    cached.write_bytes(data.blob[:-10] + b"0123456789")  # damaged on disk: fetched anew
    third = broker(data.sha256, n_trials=1)
    third.datasets[data.sha256] = data.blob
    with serve(third) as url:
        run_worker(url, tmp_path)
    assert third.trials[0].state == "finished" and gets(third) == 1
    assert cached.read_bytes() == data.blob


@pytest.mark.parametrize("served", ["nothing", "other bytes"])
def test_a_data_set_it_cannot_have_fails_the_trials_with_the_reason(
    tmp_path: Path, served: str
) -> None:
    data = upload()
    fb = broker(data.sha256, n_trials=2)
    if served == "other bytes":
        fb.datasets[data.sha256] = upload(seed=1).blob
    with serve(fb) as url:
        run_worker(url, tmp_path)
    assert [t.state for t in fb.trials] == ["failed", "failed"]
    error = fb.trials[0].error or ""
    assert "DatasetUnavailable" in error
    assert ("has no data set" if served == "nothing" else "it is not that data set") in error
    assert list(tmp_path.iterdir()) == []  # nothing kept


def test_a_server_that_is_down_gets_the_trials_back_not_failed(tmp_path: Path) -> None:
    data = upload()
    fb = broker(data.sha256, n_trials=2)
    fb.datasets[data.sha256] = data.blob
    fb.unavailable_gets = 2  # the first fetch's whole retry budget
    with serve(fb) as url:
        run_worker(url, tmp_path)
    assert [t.state for t in fb.trials] == ["finished", "finished"]
    assert len(fb.calls_to("/api/v1/leases/release")) == 1
    assert fb.calls_to("/api/v1/leases/fail") == []


def test_the_cache_keeps_the_most_recently_used_copies_within_its_bound(tmp_path: Path) -> None:
    uploads = [upload(seed=s) for s in range(3)]
    served = {u.sha256: u.blob for u in uploads}
    fetched: list[str] = []

    def fetch(sha256: str, out: Any) -> None:
        fetched.append(sha256)
        if sha256 not in served:
            raise DatasetUnavailable("no such data set")
        out.write(served[sha256])

    size = len(uploads[0].blob)
    cache = DatasetCache(tmp_path, max_bytes=2 * size + 10, fetch=fetch)
    a, b, c = (u.sha256 for u in uploads)
    cache.load(a)
    cache.load(b)
    cache.load(a)  # from disk; now used more recently than b
    cache.load(c)  # over the bound: b goes
    assert fetched == [a, b, c]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted([f"{a}.npz", f"{c}.npz"])
    assert cache.load(a).sha256 == a and fetched == [a, b, c]
    with pytest.raises(DatasetUnavailable):
        cache.load("f" * 64)
    with pytest.raises(DatasetUnavailable, match="not a data set's sha256"):
        cache.load("../../etc/passwd")
    tiny = DatasetCache(tmp_path / "tiny", max_bytes=100, fetch=fetch)
    assert tiny.load(a).sha256 == a  # larger than the bound: used, never kept
    assert not (tmp_path / "tiny").exists() or list((tmp_path / "tiny").iterdir()) == []
