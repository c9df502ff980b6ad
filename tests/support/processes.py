"""Real processes for end-to-end tests: a fresh Postgres database, the API server, workers.

Owns process management so the fault tests read as scenarios: `Database` (a fresh database per
test, dropped afterwards), `WorkerProcess` (a real `acprop-tuner worker`, with its own journal
of acknowledged writes), and `Supervisor` (restarts workers that were killed, as systemd or
Kubernetes would). The server is the product's own `ServerProcess` (a real `acprop-tuner
serve` on a free port, restartable after a kill -9; acprop_tuner/cli/local.py), as the demo
and the benchmarks run it. Everything runs through the real command line.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from acprop_tuner.cli.local import CLI, ServerProcess, free_port, wait_until
from service.db.scratch import create_database, drop_database

REPO = Path(__file__).resolve().parents[2]

__all__ = [
    "CLI",
    "REPO",
    "Database",
    "ServerProcess",
    "Supervisor",
    "WorkerProcess",
    "free_port",
    "run_cli",
    "wait_until",
    "worker_env",
]


class Database:
    """A fresh Postgres database for one test, empty or cloned from a migrated template
    (`CREATE DATABASE ... TEMPLATE`: a file copy, much faster than running the migrations)."""

    def __init__(self, admin_url: str, template: str | None = None) -> None:
        admin = make_url(admin_url)
        self.name = f"acprop_e2e_{uuid.uuid4().hex[:12]}"
        self._admin: URL = admin
        self.url: URL = admin.set(database=self.name)
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        create_database(engine, self.name, template)
        engine.dispose()
        self.engine = sa.create_engine(self.url, pool_pre_ping=True)

    @property
    def url_str(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def rows(self, sql: str, **params: Any) -> list[Mapping[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]

    def drop(self) -> None:
        self.engine.dispose()
        engine = sa.create_engine(self._admin, isolation_level="AUTOCOMMIT")
        drop_database(engine, self.name)
        engine.dispose()


def run_cli(args: list[str], env: Mapping[str, str], timeout_s: float = 120) -> str:
    done = subprocess.run(
        [*CLI, *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"acprop-tuner {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


class WorkerProcess:
    """One `acprop-tuner worker` subprocess; restartable with the same arguments."""

    def __init__(
        self,
        name: str,
        server_url: str,
        env: Mapping[str, str],
        log_dir: Path,
        args: list[str],
        command: list[str] | None = None,
    ) -> None:
        self.name = name
        # By default the real `acprop-tuner worker`; tests may run another worker program.
        self.args = [*(command or [*CLI, "worker"]), "--server", server_url, *args]
        self.journal = log_dir / f"{name}.journal.jsonl"
        self.env = {**env, "ACPROP_TUNER_WORKER_JOURNAL": str(self.journal)}
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        parts = []
        for i in range(1, self.starts + 1):
            path = self.log_dir / f"{self.name}-{i}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


class Supervisor:
    """Restarts workers that died of a signal (killed), as a process supervisor would."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.restarts = 0

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def locked(self) -> threading.Lock:
        """Hold while killing, so the restart is not raced by the check."""
        return self._lock

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                for worker in self.workers:
                    proc = worker.proc
                    # Killed by a signal (negative return code): restart it.
                    if proc is not None and proc.poll() is not None and proc.returncode < 0:
                        worker.start()
                        self.restarts += 1


def worker_env(base: Mapping[str, str], token: str, cache_dir: Path) -> dict[str, str]:
    env = dict(base)
    env["ACPROP_TUNER_WORKER_TOKEN"] = token
    env["ACPROP_TUNER_JAX_CACHE_DIR"] = str(cache_dir)
    env["JAX_PLATFORMS"] = "cpu"
    # Several workers share 2 cores: one XLA thread each keeps them from fighting.
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("ACPROP_TUNER_DATABASE_URL", None)  # workers never get database credentials
    return env
