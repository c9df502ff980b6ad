"""Fixtures for the real-process tests: a fresh Postgres database per test (cloned from one
migrated with `acprop-tuner migrate`, with keys made by `acprop-tuner keys create`), a real API
server with short lease settings, jobs submitted over HTTP, and worker subprocesses.

Postgres comes from `ACPROP_TUNER_TEST_POSTGRES_URL`; without it these tests skip, unless
`ACPROP_TUNER_REQUIRE_POSTGRES=1` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import (
    REPO,
    Database,
    ServerProcess,
    WorkerProcess,
    run_cli,
    wait_until,
    worker_env,
)

# Short leases so that crash recovery is observable in seconds (TTL + reaper period + 1 s is
# the deadline for a killed worker's trial to leave `running`).
LEASE_TTL_S = 2.0
REAPER_PERIOD_S = 0.5


def _postgres_url() -> str:
    url = os.environ.get("ACPROP_TUNER_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("ACPROP_TUNER_REQUIRE_POSTGRES") == "1":
        pytest.fail("ACPROP_TUNER_REQUIRE_POSTGRES=1 but ACPROP_TUNER_TEST_POSTGRES_URL is unset")
    pytest.skip("set ACPROP_TUNER_TEST_POSTGRES_URL to run the real-process tests")


@pytest.fixture(scope="session")
def jax_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One persistent compilation cache for every worker of the session: restarts load their
    programs instead of compiling them again."""
    return tmp_path_factory.mktemp("jax-cache")


@dataclass
class Stack:
    """A database, a server on it, a user key and a worker key, and the workers started."""

    db: Database
    server: ServerProcess
    user_key: str
    worker_key: str
    base_env: dict[str, str]
    log_dir: Path
    jax_cache_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    replicas: list[ServerProcess] = field(default_factory=list)

    def replica(self) -> ServerProcess:
        """Another API process on the same database (as behind a load balancer)."""
        server = ServerProcess(
            self.base_env, log_dir=self.log_dir, name=f"replica{len(self.replicas) + 1}", cwd=REPO
        )
        self.replicas.append(server)
        server.start()
        return server

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.user_key}"},
            timeout=30,
        )

    def submit(self, task: dict[str, Any], **spec: Any) -> str:
        # These tests are about trials under faults: no baselines unless a test names some
        # (a real worker training them is the demo's test, tests/e2e/test_demo.py).
        body = {"task": task, "baselines": [], **spec}
        with self.http() as client:
            response = client.post(
                "/api/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        with self.http() as client:
            response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_finished(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            try:
                job = self.job(job_id)
            except httpx.HTTPError:
                return None  # the server may be restarting
            return job if job["status"] in ("finished", "failed", "cancelled") else None

        try:
            return dict(wait_until(finished, timeout_s, 0.25, f"job {job_id} to finish"))
        except TimeoutError:
            raise AssertionError(self.diagnostics(job_id)) from None

    def worker(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        server: ServerProcess | None = None,
    ) -> WorkerProcess:
        wenv = worker_env(self.base_env, self.worker_key, self.jax_cache_dir)
        wenv.update(env or {})
        url = (server or self.server).url
        proc = WorkerProcess(name, url, wenv, self.log_dir, list(args), command)
        self.workers.append(proc)
        return proc

    def live_leases(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.db.rows(
                "SELECT l.trial_id, l.attempt, l.worker_id, t.number FROM acprop_leases l "
                "JOIN acprop_trials t ON t.id = l.trial_id WHERE l.ended_at IS NULL"
            )
        ]

    def diagnostics(self, job_id: str) -> str:
        states = self.db.rows(
            "SELECT state, count(*) AS n FROM acprop_trials WHERE job_id = :j GROUP BY state",
            j=uuid.UUID(job_id),
        )
        tails = "\n".join(f"--- {w.name}\n{w.logs()[-1500:]}" for w in self.workers)
        return f"job {job_id} did not finish; trial states {states}\n{tails}\n--- server\n{self.server.log_tail()}"


def _base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env.update(
        {
            "ACPROP_TUNER_DATABASE_URL": database_url,
            "ACPROP_TUNER_LEASE_TTL_S": str(LEASE_TTL_S),
            "ACPROP_TUNER_REAPER_PERIOD_S": str(REAPER_PERIOD_S),
            "ACPROP_TUNER_LEASE_RETRY_AFTER_S": "0.2",
            # Eight workers behind one key must not trip the per-key rate limit.
            "ACPROP_TUNER_RATE_LIMIT_PER_S": "100000",
            "ACPROP_TUNER_RATE_LIMIT_BURST": "100000",
            "ACPROP_TUNER_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass(frozen=True)
class Template:
    """A migrated database with a user and a worker key, made once per session with the CLI;
    each test clones it."""

    name: str
    user_key: str
    worker_key: str


@pytest.fixture(scope="session")
def template_db() -> Iterator[Template]:
    admin_url = _postgres_url()
    db = Database(admin_url)
    try:
        env = _base_env(db.url_str)
        run_cli(["migrate"], env)
        user_key = run_cli(["keys", "create", "--tenant", "e2e", "--scope", "user"], env)
        worker_key = run_cli(["keys", "create", "--tenant", "e2e", "--scope", "worker"], env)
        db.engine.dispose()  # a template must have no open connection when it is cloned
        yield Template(db.name, user_key.strip(), worker_key.strip())
    finally:
        db.drop()


@pytest.fixture
def make_stack(tmp_path: Path, jax_cache_dir: Path, template_db: Template) -> Iterator[Any]:
    """`make_stack(**settings)`: a fresh database (a clone of the migrated template) and a
    running server with those settings (as `ACPROP_TUNER_<NAME>` variables) on top of the
    short lease defaults."""
    admin_url = _postgres_url()
    made: list[Stack] = []

    def make(**settings: Any) -> Stack:
        db = Database(admin_url, template=template_db.name)
        env = _base_env(db.url_str)
        env.update({f"ACPROP_TUNER_{k.upper()}": str(v) for k, v in settings.items()})
        log_dir = tmp_path / f"stack-{len(made)}"
        log_dir.mkdir()
        stack = Stack(
            db,
            ServerProcess(env, log_dir=log_dir, cwd=REPO),
            template_db.user_key,
            template_db.worker_key,
            env,
            log_dir,
            jax_cache_dir,
        )
        made.append(stack)
        stack.server.start()
        return stack

    yield make
    for stack in made:
        for worker in stack.workers:
            worker.stop()
        stack.server.stop()
        for replica in stack.replicas:
            replica.stop()
        stack.db.drop()
