"""Helpers for the broker's integration tests: job submissions and a real uvicorn server.

Databases come from the fixtures in conftest.py (Postgres from ACPROP_TUNER_TEST_POSTGRES_URL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_SPEC: dict[str, Any] = {
    "task": {"name": "rosenbrock", "options": {}},
    "space": {
        "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
        "b1": {"low": 0.8, "high": 0.99, "log": False},
        "b2": {"low": 0.9, "high": 0.9999, "log": False},
        "eps": {"value": 1e-16},
        "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
    },
    "budget": {"n_trials": 16, "steps": 100, "seeds": 2, "report_every": 5, "max_attempts": 3},
    "sampler": "tpe",
    "pruner": "none",
    "warm_start": False,
}


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under a real uvicorn server in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def job_body(**budget: Any) -> dict[str, Any]:
    """A job submission for the jobs API (no warm start, so the sampler makes every trial)."""
    spec = {k: v for k, v in DEFAULT_SPEC.items() if k != "budget"}
    return {**spec, "budget": {**DEFAULT_SPEC["budget"], **budget}}
