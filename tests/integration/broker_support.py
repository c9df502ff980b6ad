"""Helpers for the broker's integration tests: a tenant's API, the stored state of a job,
job submissions and a real uvicorn server.

Databases come from the fixtures in conftest.py (Postgres from ACPROP_TUNER_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.broker.study_sink import TRIAL_ID_ATTR
from service.db.models import KeyScope, Lease, Trial, TrialReport
from service.keys import create_key

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


class Api:
    """One tenant's user and worker keys on the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client: TestClient = app.state.test_client
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        with app.state.session_factory() as session:
            _, self.user_key = create_key(session, tenant=tenant, scope=KeyScope.USER)
            worker, self.worker_key = create_key(session, tenant=tenant, scope=KeyScope.WORKER)
            self.tenant_id = worker.tenant_id

    def post(self, path: str, body: Any, *, key: str | None = None) -> Any:
        # Raw JSON so that NaN and Infinity literals reach the server as a worker might send.
        return self.client.post(
            f"/api/v1{path}",
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {key or self.worker_key}",
                "Content-Type": "application/json",
            },
        )

    def submit(self, **budget: Any) -> dict[str, Any]:
        r = self.post("/jobs", job_body(**budget), key=self.user_key)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.user_key}"}
        )
        assert r.status_code == 200, r.text
        return r.json()

    def lease(self, capacity: int) -> list[dict[str, Any]]:
        r = self.post("/leases", {"worker_id": "test-worker", "capacity": capacity})
        assert r.status_code == 200, r.text
        return r.json()["leases"]


def result(token: str, value: float = 0.5, **kw: Any) -> dict[str, Any]:
    return {
        "token": token,
        "final_losses": [value, value],
        "validation_losses": [value, value],
        "last_finite_losses": [value, value],
        "diverged_at_step": [None, None],
        "pruned": False,
        "wall_s": 0.1,
        "compile_s": 0.0,
        **kw,
    }


def db_state(app: Any, job_id: str) -> dict[str, Any]:
    """Everything the broker stores of one job (ours and Optuna's), comparable with ==."""
    with app.state.session_factory() as s:
        trials = s.scalars(select(Trial).where(Trial.job_id == uuid.UUID(job_id))).all()
        ids = [t.id for t in trials]
        reports = s.execute(
            select(TrialReport.trial_id, TrialReport.attempt, TrialReport.step, TrialReport.losses)
            .where(TrialReport.trial_id.in_(ids))
            .order_by(TrialReport.trial_id, TrialReport.step)
        ).all()
        leases = s.execute(
            select(Lease.trial_id, Lease.attempt, Lease.end_reason, Lease.expires_at)
            .where(Lease.trial_id.in_(ids))
            .order_by(Lease.trial_id, Lease.attempt)
        ).all()
        study_name = f"acprop-job-{job_id}"
    storage = app.state.studies.storage()
    frozen = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    return {
        "trials": sorted(
            (t.id, t.number, t.state, t.attempt, t.value, t.diverged_at_step, t.optuna_trial_id)
            for t in trials
        ),
        "reports": [tuple(r) for r in reports],
        "leases": [tuple(le) for le in leases],
        "optuna": sorted(
            (f.user_attrs.get(TRIAL_ID_ATTR), f.state.name, f.value, f.intermediate_values)
            for f in frozen
        ),
    }
