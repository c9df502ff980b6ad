"""Helpers for the broker's integration tests: a fresh migrated database, jobs, a worker.

Postgres comes from ACPROP_TUNER_TEST_POSTGRES_URL (a server URL; each test database is
created beside it and dropped afterwards). With ACPROP_TUNER_REQUIRE_POSTGRES=1 a missing
server fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.db.migrate import upgrade
from service.db.models import Job, Tenant
from service.studies import study_name

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


def postgres_server_url() -> str | None:
    url = os.environ.get("ACPROP_TUNER_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("ACPROP_TUNER_REQUIRE_POSTGRES") == "1":
            pytest.fail("ACPROP_TUNER_TEST_POSTGRES_URL is not set but Postgres is required")
        pytest.skip("ACPROP_TUNER_TEST_POSTGRES_URL is not set")
    return url


@contextmanager
def fresh_postgres(prefix: str = "acprop_broker") -> Iterator[str]:
    """A new, migrated Postgres database; yields its URL and drops it afterwards."""
    server = make_url(postgres_server_url()).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("ACPROP_TUNER_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"Postgres not reachable: {type(exc).__name__}")
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_job(session, studies, tenant_id: uuid.UUID, **budget: Any) -> Job:  # type: ignore[no-untyped-def]
    """Insert a queued job with its Optuna study, as the jobs API does (committed)."""
    spec = {**DEFAULT_SPEC, "budget": {**DEFAULT_SPEC["budget"], **budget}}
    b = spec["budget"]
    job_id = uuid.uuid4()
    job = Job(
        id=job_id,
        tenant_id=tenant_id,
        name="test",
        spec=spec,
        n_trials=b["n_trials"],
        steps=b["steps"],
        seeds=b["seeds"],
        report_every=b["report_every"],
        max_attempts=b["max_attempts"],
        study_name=study_name(job_id),
    )
    studies.ensure(job.study_name)
    session.add(job)
    session.commit()
    return job


def make_tenant(session, name: str | None = None) -> Tenant:  # type: ignore[no-untyped-def]
    tenant = Tenant(name=name or f"t-{uuid.uuid4().hex[:8]}")
    session.add(tenant)
    session.commit()
    return tenant


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
