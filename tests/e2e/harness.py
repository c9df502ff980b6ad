"""Real processes for end-to-end tests: a fresh Postgres database, the API server, workers.

Owns process management so the fault tests read as scenarios: `Database` (a fresh database per
test, dropped afterwards), `Server` (a real `acprop-tuner serve` uvicorn subprocess on a free
port, restartable after a kill -9), `WorkerProcess` (a real `acprop-tuner worker`, with its own
journal of acknowledged writes), and `Supervisor` (restarts workers that were killed, as
systemd or Kubernetes would). Everything runs through the real command line.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

CLI = [sys.executable, "-m", "acprop_tuner"]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


class Database:
    """A fresh Postgres database for one test, empty or cloned from a migrated template
    (`CREATE DATABASE ... TEMPLATE`: a file copy, much faster than running the migrations)."""

    def __init__(self, admin_url: str, template: str | None = None) -> None:
        admin = make_url(admin_url)
        self.name = f"acprop_e2e_{uuid.uuid4().hex[:12]}"
        self._admin: URL = admin
        self.url: URL = admin.set(database=self.name)
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        clone = f' TEMPLATE "{template}"' if template else ""
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"{clone}'))
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
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
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


class Server:
    """`acprop-tuner serve` as a subprocess; `kill()` is a SIGKILL, `start()` brings it back."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str = "server") -> None:
        self.name = name
        self.env = dict(env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 60) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self.ready, timeout_s, 0.1, "the API server to answer /readyz")

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        path = self.log_dir / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


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
