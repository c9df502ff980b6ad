"""The recommendation's fit runs with one BLAS thread and gives the process's limits back
(optimizer/recommendation/_threads.py), also when fits overlap or one raises.

Each case runs in a fresh interpreter, as the API server runs its fits: in threads other than
the main one, with BLAS started at 2 threads (``OPENBLAS_NUM_THREADS=2``, so that a limit of 1
is observable on any machine). A fresh process matters: once a process's
main thread has set OpenBLAS's thread count itself, OpenBLAS ignores counts set from other
threads, so the result would depend on what earlier tests did in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, threading
import numpy, scipy.linalg
from threadpoolctl import threadpool_info
from optimizer.recommendation import NotEnoughEvidence, recommend
from optimizer.recommendation import _choice
from optimizer.recommendation._threads import active_fits, one_blas_thread
from bench.recommendation_scale import synthetic_job

def blas():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

def in_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(timeout=300)
    return out[0]
"""


def _run(body: str) -> dict:  # type: ignore[type-arg]
    script = PRELUDE + textwrap.dedent(body)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    assert result["before"] and set(result["before"]) == {2}, result["before"]
    return result


def test_the_fit_runs_with_one_blas_thread_and_restores_the_limit() -> None:
    result = _run("""
        seen = []
        real = _choice.fit_loss_model
        def spying(*args, **kwargs):
            seen.append(blas())
            return real(*args, **kwargs)
        _choice.fit_loss_model = spying
        before = blas()
        answer = in_thread(lambda: recommend(synthetic_job(60, seed=0), status="final"))
        print(json.dumps({"before": before, "seen": seen, "after": blas(),
                          "active": active_fits(), "lr": answer.learning_rate}))
    """)
    assert result["lr"] > 0
    assert result["seen"] and all(set(n) == {1} for n in result["seen"])
    assert result["after"] == result["before"]
    assert result["active"] == 0


def test_a_failing_fit_restores_the_limit() -> None:
    result = _run("""
        before = blas()
        def failing():
            try:
                recommend([], status="final")
            except NotEnoughEvidence:
                return "raised"
        outcome = in_thread(failing)
        print(json.dumps({"before": before, "outcome": outcome, "after": blas(),
                          "active": active_fits()}))
    """)
    assert result["outcome"] == "raised"
    assert result["after"] == result["before"]
    assert result["active"] == 0


def test_overlapping_fits_share_the_limit_and_the_last_one_restores_it() -> None:
    result = _run("""
        before = blas()
        first_inside, release_first = threading.Event(), threading.Event()

        @one_blas_thread
        def first():
            first_inside.set()
            release_first.wait(timeout=60)

        @one_blas_thread
        def second():
            return blas()

        thread = threading.Thread(target=first)
        thread.start()
        first_inside.wait(timeout=60)
        inside_second = in_thread(second)  # starts and ends while the first still runs
        between = blas()  # the first fit still holds the limit
        release_first.set()
        thread.join(timeout=60)
        print(json.dumps({"before": before, "inside_second": inside_second,
                          "between": between, "after": blas(), "active": active_fits()}))
    """)
    assert set(result["inside_second"]) == {1}
    assert set(result["between"]) == {1}
    assert result["after"] == result["before"]
    assert result["active"] == 0
