"""Postgres goes away while a real API server (a uvicorn subprocess) is serving: requests
during the outage get 503 with Retry-After (no 500, none hangs past the client timeout), and
the server serves again within 10 s of Postgres being back, without being restarted.

The shared PostgreSQL 15 cluster is stopped and started with ``pg_ctlcluster`` (a restart
with a short, deliberate gap, so that the outage is observed every time); it is down for
about two seconds. Whatever happens, the test starts it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from acprop_tuner.cli.local import ServerProcess
from service.db.models import KeyScope
from service.db.session import create_session_factory
from service.keys import create_key
from tests.support.databases import postgres_required

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT_S = 5.0
RECOVERY_DEADLINE_S = 10.0
OUTAGE_S = 2.0


def _cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        if postgres_required():
            pytest.fail("pg_ctlcluster and a cluster in /etc/postgresql are needed")
        pytest.skip("no local PostgreSQL cluster to restart")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main"]


def _pg(action: str, cluster: list[str]) -> None:
    subprocess.run([*cluster, action], check=True, capture_output=True, timeout=60)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0


def _ensure_started(cluster: list[str]) -> None:
    deadline = time.monotonic() + 60
    while not _pg_ready() and time.monotonic() < deadline:
        subprocess.run([*cluster, "start"], capture_output=True, timeout=60)
        time.sleep(0.5)


@pytest.fixture(params=["postgres"], scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Server:
    url: str
    headers: dict[str, str]
    log: Path


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    engine = create_engine(database_url)
    with create_session_factory(engine)() as session:
        _, secret = create_key(
            session, tenant=f"outage-{uuid.uuid4().hex[:6]}", scope=KeyScope.USER
        )
    engine.dispose()
    env = {
        **os.environ,
        "ACPROP_TUNER_DATABASE_URL": database_url,
        "ACPROP_TUNER_DATA_DIR": str(tmp_path),
        "ACPROP_TUNER_DB_CONNECT_TIMEOUT_S": "2",
        "ACPROP_TUNER_DB_POOL_TIMEOUT_S": "2",
        "ACPROP_TUNER_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    with ServerProcess(env, log_dir=tmp_path, cwd=ROOT).start(timeout_s=30) as proc:
        log = tmp_path / f"{proc.name}-{proc.starts}.log"
        yield Server(proc.url, {"Authorization": f"Bearer {secret}"}, log)


@dataclass
class Outcome:
    at: float
    what: str
    status: int | None
    retry_after: str | None
    error: str | None


def _poll(server: Server, job_id: str, stop: threading.Event, out: list[Outcome]) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=CLIENT_TIMEOUT_S) as c:
        i = 0
        while not stop.is_set():
            i += 1
            what, call = [
                ("get job", lambda: c.get(f"/api/v1/jobs/{job_id}")),
                ("list jobs", lambda: c.get("/api/v1/jobs")),
                (
                    "create job",
                    lambda: c.post("/api/v1/jobs", json={"task": {"name": "rosenbrock"}}),
                ),
                ("readyz", lambda: c.get("/readyz")),
            ][i % 4]
            try:
                r = call()
                out.append(
                    Outcome(
                        time.monotonic(), what, r.status_code, r.headers.get("retry-after"), None
                    )
                )
            except httpx.HTTPError as exc:
                out.append(Outcome(time.monotonic(), what, None, None, type(exc).__name__))
            time.sleep(0.05)


def test_outage_gives_503_then_recovers_without_restart(server: Server) -> None:
    cluster = _cluster()
    created = httpx.post(
        f"{server.url}/api/v1/jobs",
        json={"task": {"name": "rosenbrock"}},
        headers=server.headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    outcomes: list[Outcome] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(server, job_id, stop, outcomes), daemon=True)
    poller.start()
    try:
        time.sleep(0.5)
        _pg("stop", cluster)
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        starting_at = time.monotonic()
        _pg("start", cluster)
        up_at = time.monotonic()
        # Serve again within 10 s of the database being back.
        recovered_at = None
        while time.monotonic() - up_at < RECOVERY_DEADLINE_S + CLIENT_TIMEOUT_S:
            recent = [
                o for o in outcomes if o.at > up_at and o.what == "get job" and o.status == 200
            ]
            if recent:
                recovered_at = recent[0].at
                break
            time.sleep(0.1)
    finally:
        stop.set()
        poller.join(timeout=CLIENT_TIMEOUT_S + 5)
        _ensure_started(cluster)

    log = server.log.read_text()
    during = [o for o in outcomes if down_at + 0.5 < o.at < starting_at]
    assert during, "no request was answered during the outage"
    assert all(o.status == 503 for o in during), [
        (o.what, o.status, o.error) for o in during if o.status != 503
    ]
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in during)
    # Nothing ever failed with a 5xx other than 503, and no call hung past the client timeout.
    assert not [o for o in outcomes if o.error is not None], [o for o in outcomes if o.error]
    assert {o.status for o in outcomes} <= {200, 201, 503}, sorted({o.status for o in outcomes})
    assert recovered_at is not None, log[-3000:]
    assert recovered_at - up_at <= RECOVERY_DEADLINE_S
    # The server kept running and serves every route again.
    r = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=server.headers, timeout=10)
    assert r.status_code == 200
    assert "Traceback" not in r.text
