"""A local stack's processes: the API server as a child process (`ServerProcess`) or in a
thread of this one (`serve_in_thread`), and waiting for things to become true.

The demo runs its server through these, and so do the benchmarks and the tests (one helper
for all three, so they start servers the same way the demo does). A child server is the real
`acprop-tuner serve` on a free local port, ready once `/readyz` answers 200.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CLI", "ServerProcess", "free_port", "serve_in_thread", "wait_until"]

#: This interpreter running the command line (works from a checkout and from an install).
CLI: tuple[str, ...] = (sys.executable, "-m", "acprop_tuner")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bound, then released: another process could take
    it before the server binds it, which a local stack accepts)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that.

    Raises:
        TimeoutError: naming ``what`` after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


class ServerProcess:
    """`acprop-tuner serve` (or ``argv``) as a child process on a free port.

    `start` waits until `/readyz` answers; `stop` terminates it (then kills it if it does not
    stop); `kill` is a SIGKILL, after which `start` brings it back on the same port. With a
    ``log_dir``, each start writes ``<name>-<n>.log``; without, its output goes where this
    process's goes, or nowhere with ``quiet``.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_dir: Path | None = None,
        name: str = "server",
        port: int | None = None,
        argv: Sequence[str] | None = None,
        cwd: Path | None = None,
        ready_path: str = "/readyz",
        quiet: bool = False,
    ) -> None:
        self.env = dict(env)
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.cwd = cwd
        self.ready_path = ready_path
        self.quiet = quiet
        self.argv = list(argv or [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)])
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 60) -> ServerProcess:
        self.starts += 1
        out: Any = subprocess.DEVNULL if self.quiet else None
        if self.log_dir is not None:
            out = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
            )
        finally:
            if self.log_dir is not None:
                out.close()
        wait_until(self.ready, timeout_s, 0.1, f"the API server to answer {self.ready_path}")
        return self

    def ready(self) -> bool:
        import httpx  # the client's transport; lazy so that importing this module stays light

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return httpx.get(f"{self.url}{self.ready_path}", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 15) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve_in_thread(app: Any, *, timeout_s: float = 30) -> Iterator[str]:
    """Run the ASGI ``app`` (its lifespan included) under uvicorn in a thread of this
    process; yields its base URL and stops it afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), timeout_s, 0.02, "uvicorn to start")
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
