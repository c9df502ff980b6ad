"""The API server's fitting processes (service/recommendation_fitter.py) end with it: a
server stopped with SIGTERM stops its pool, and one killed with SIGKILL, which cannot, leaves
no child behind (each child watches the server that started it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.stack import Stack


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _until(condition, what: str, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """A liveness bound (not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _fitting_child(stack: Stack) -> int:
    assert stack.server.proc is not None
    server = stack.server.proc.pid
    # `serve` starts one fitting child with the server (so the first fit need not wait).
    _until(lambda: bool(_pool_children(server)), "the server's fitting child")
    (child,) = _pool_children(server)
    return child


def _pool_children(pid: int) -> list[int]:
    """The pool's workers among ``pid``'s children (not multiprocessing's resource tracker)."""
    out = []
    for child in _children(pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_text()
        except OSError:
            continue
        if "spawn_main" in cmdline:
            out.append(child)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_fitting_child_ends_with_the_server(make_stack, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    child = _fitting_child(stack)
    assert stack.server.proc is not None
    os.kill(stack.server.proc.pid, sig)
    stack.server.proc.wait(timeout=60)
    _until(lambda: not _alive(child), f"the fitting child {child} to end after {sig.name}")
