"""The service's commands as a user runs them (subprocesses, SQLite in a temp data dir):
``migrate``, ``keys create|list|revoke``, ``serve`` refusing an unmigrated database, and
``recommend`` printing the server's 409 reason."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from acprop_tuner.cli.local import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def _run(
    data_dir: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env.update({"ACPROP_TUNER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)})
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "acprop_tuner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(data_dir: Path) -> None:
    r = _run(data_dir, "serve", "--port", "1")
    assert r.returncode != 0
    assert "acprop-tuner migrate" in r.stderr


def test_migrate_then_keys_lifecycle(data_dir: Path) -> None:
    r = _run(data_dir, "migrate")
    assert r.returncode == 0, r.stderr
    assert "acprop-tuner.sqlite" in r.stdout  # the default database lives in the data dir
    assert (data_dir / "acprop-tuner.sqlite").exists()
    assert _run(data_dir, "migrate").returncode == 0  # idempotent

    created = _run(
        data_dir, "keys", "create", "--tenant", "acme", "--scope", "user", "--name", "ci"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n"  # the key alone on stdout
    assert secret.startswith("acpt_")

    listed = _run(data_dir, "keys", "list", "--tenant", "acme")
    assert listed.returncode == 0
    assert secret not in listed.stdout  # never the secret
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()[1:]]
    assert len(rows) == 1 and rows[0][1] == "acme" and rows[0][2] == "user"
    key_id = rows[0][0]

    revoked = _run(data_dir, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    listed = _run(data_dir, "keys", "list")
    assert listed.stdout.strip().splitlines()[1].split("\t")[6] != ""

    missing = _run(data_dir, "keys", "revoke", str(uuid.uuid4()))
    assert missing.returncode != 0 and "no API key" in missing.stderr


def test_recommend_explains_why_there_is_none(data_dir: Path) -> None:
    assert _run(data_dir, "migrate").returncode == 0
    r = _run(data_dir, "recommend", str(uuid.uuid4()))
    assert r.returncode != 0
    assert "404" in r.stderr


def test_database_password_never_printed(data_dir: Path) -> None:
    url = "postgresql+psycopg://someone:hunter2secret@127.0.0.1:1/nowhere"
    r = _run(data_dir, "migrate", extra_env={"ACPROP_TUNER_DATABASE_URL": url})
    assert r.returncode != 0
    assert "hunter2secret" not in r.stdout + r.stderr
    assert "cannot reach the database" in r.stderr


def test_serve_on_sqlite_and_recommend_from_the_server(data_dir: Path, tmp_path: Path) -> None:
    import httpx

    assert _run(data_dir, "migrate").returncode == 0
    secret = _run(data_dir, "keys", "create", "--tenant", "acme", "--scope", "user").stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env.update({"ACPROP_TUNER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)})
    with ServerProcess(env, log_dir=tmp_path, cwd=ROOT).start(timeout_s=30) as server:
        job = httpx.post(
            f"{server.url}/api/v1/jobs",
            json={"task": {"name": "rosenbrock"}},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        assert job.status_code == 201
        # The key comes from the environment, not the command line.
        r = _run(
            data_dir,
            "recommend",
            job.json()["id"],
            "--server",
            server.url,
            extra_env={"ACPROP_TUNER_TOKEN": secret},
        )
        assert r.returncode != 0
        assert "409" in r.stderr and "no recommendation" in r.stderr
        assert secret not in r.stderr + r.stdout
    assert server.log_tail(10**6) and secret not in server.log_tail(10**6)
