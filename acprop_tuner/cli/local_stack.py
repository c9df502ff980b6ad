"""The service on one machine for one run: the embedded database, keys, the API in a thread
of this process, and worker processes. What `acprop-tuner tune` and `acprop_tuner.tune`
stand on; the same code as a deployment, started and stopped for the user.

- The database is the one every command uses (``ACPROP_TUNER_DATABASE_URL``, by default the
  SQLite file in the data dir), migrated to head, so ``acprop-tuner recommend JOB`` and the
  dashboard read the run afterwards.
- Keys: a user and a worker key of the tenant ``local``, made for this run and revoked when
  it stops.
- The API runs in a thread (``acprop_tuner.cli.local.serve_in_thread``: no signal handlers,
  so it also runs inside a notebook); it is the only writer of the database, as always.
- Trust: a ``module:factory`` task is allowed for this run only, by its exact module, on this
  server (its settings, not the environment's defaults) and on its workers
  (``--allow-task-module``): ``optimizer/tasks/trust.py``.
- Workers are ``acprop-tuner worker`` processes pinned to the run's device; their log is a
  file in the data dir. ``--idle-exit`` ends one whose server went away (this process killed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acprop_tuner.cli.local import CLI, serve_in_thread

__all__ = ["LocalStack", "StackOptions"]

TENANT = "local"
#: A worker whose server has gone (its parent was killed) leaves after this many idle seconds.
WORKER_IDLE_EXIT_S = 60.0


@dataclass(frozen=True)
class StackOptions:
    """How to run the local service: where, which device, how many trials at once."""

    data_dir: Path | None = None  # None: the settings' (ACPROP_TUNER_DATA_DIR or per user)
    device: str = "cpu"
    capacity: int = 16  # trials each worker trains at once (K)
    workers: int = 1
    allow_module: str | None = None  # the one task module this run allows
    python_path: str | None = None  # a directory the workers need to import the task


class LocalStack:
    """Start with :meth:`start`, stop with :meth:`close` (idempotent); see the module doc."""

    def __init__(self, options: StackOptions) -> None:
        from pydantic import SecretStr

        from service.settings import Settings

        self.options = options
        base = Settings()  # the environment's choices: data dir, database URL, ...
        overrides: dict[str, Any] = {
            # The run's one task module, explicitly: never the environment's prefixes.
            "allowed_task_modules": options.allow_module or "",
            "lease_retry_after_s": 0.5,
            "log_level": "warning",
        }
        if options.data_dir is not None:
            overrides["data_dir"] = Path(options.data_dir)
            if base.database_url is None:
                overrides["database_url"] = SecretStr(
                    f"sqlite:///{Path(options.data_dir) / 'acprop-tuner.sqlite'}"
                )
        self.settings = base.model_copy(update=overrides)
        self.url = ""
        self.user_key = ""
        self._key_ids: list[uuid.UUID] = []
        self._app: Any = None
        self._server: contextlib.ExitStack | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(self.settings.data_dir) / "logs"
        self._logs: list[Path] = []

    # -- start -----------------------------------------------------------------------------

    def start(self) -> LocalStack:
        from service.db.migrate import upgrade

        upgrade(self.settings.database_url_value())
        self._start_server()
        worker_key = self._new_key("worker")
        self.user_key = self._new_key("user")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.options.workers):
            self._start_worker(worker_key)
        return self

    def _start_server(self) -> None:
        from service.app import create_app

        self._app = create_app(self.settings)
        self._server = contextlib.ExitStack()
        self.url = self._server.enter_context(serve_in_thread(self._app))

    def _new_key(self, scope: str) -> str:
        from service.db.models import KeyScope
        from service.keys import create_key

        with self._app.state.session_factory() as session:
            key, secret = create_key(
                session, tenant=TENANT, scope=KeyScope(scope), name=f"tune {os.getpid()}"
            )
            self._key_ids.append(key.id)
        return secret

    def _start_worker(self, token: str) -> None:
        opts = self.options
        argv = [
            *CLI, "worker", "--server", self.url, "--capacity", str(opts.capacity),
            "--device", opts.device, "--idle-exit", str(WORKER_IDLE_EXIT_S),
        ]  # fmt: skip
        if opts.allow_module:
            argv += ["--allow-task-module", opts.allow_module]
        env = {**os.environ, "ACPROP_TUNER_WORKER_TOKEN": token}
        env.setdefault("ACPROP_TUNER_WORKER_LOG_LEVEL", "WARNING")
        if opts.python_path:
            paths = [opts.python_path, env.get("PYTHONPATH")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        log = self.log_dir / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.workers)}.log"
        self._logs.append(log)
        with open(log, "wb") as out:
            self.workers.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
            )

    # -- while it runs ---------------------------------------------------------------------

    def worker_problem(self) -> str | None:
        """Why the workers cannot go on (every one exited), with the end of a log; else None."""
        if not self.workers or any(w.poll() is None for w in self.workers):
            return None
        codes = ", ".join(str(w.returncode) for w in self.workers)
        return f"the worker exited (code {codes}): {self.log_tail()}"

    def log_tail(self, n: int = 1500) -> str:
        if not self._logs or not self._logs[-1].exists():
            return ""
        text = self._logs[-1].read_text(errors="replace").strip()
        return text[-n:]

    # -- stop ------------------------------------------------------------------------------

    def stop_workers(self, timeout_s: float = 60.0) -> None:
        """SIGTERM: each worker finishes its chunk, gives its leases back and exits; one that
        does not within ``timeout_s`` is killed."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def end_leases(self, job_id: str) -> int:
        """After the workers stopped: end what a killed worker could not give back."""
        from service.broker.lease_endings import end_leases_of_ended_job
        from service.db.types import utcnow

        with self._app.state.session_factory() as session:
            return end_leases_of_ended_job(session, uuid.UUID(job_id), utcnow())

    def stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def close(self) -> None:
        """Stop the workers, revoke the run's keys, stop the API (idempotent)."""
        self.stop_workers()
        if self._app is not None and self._key_ids:
            from service.keys import revoke_key

            with self._app.state.session_factory() as session:
                for key_id in self._key_ids:
                    revoke_key(session, key_id)
            self._key_ids = []
        self.stop_server()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
