"""The worker's journal: an append-only JSON-lines record of what the server acknowledged.

Owns one file (path from `ACPROP_TUNER_WORKER_JOURNAL`, off when unset). The worker appends a
line when a lease is granted, when a report or completion gets a 2xx, when a lease is lost and
when leases are released. Fault tests compare it with the database: every acknowledged write
must still be there after crashes. Each line is one `write(2)` on an `O_APPEND` descriptor, so
a worker killed with SIGKILL leaves whole lines behind, and several workers may share a file.
Tokens are never written (they are credentials for the lease); trials are named by id and
attempt.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

ENV_VAR = "ACPROP_TUNER_WORKER_JOURNAL"


class Journal:
    """Appends events; a no-op when constructed without a path."""

    def __init__(self, path: str | None, *, worker_id: str) -> None:
        self._worker_id = worker_id
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def from_env(cls, *, worker_id: str) -> Journal:
        return cls(os.environ.get(ENV_VAR) or None, worker_id=worker_id)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, event: str, **fields: Any) -> None:
        if self._fd is None:
            return
        record = {"event": event, "t": time.time(), "worker": self._worker_id, "pid": os.getpid()}
        record.update(fields)
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read(path: str) -> list[dict[str, Any]]:
    """All whole events in a journal (a torn last line, if any, is skipped)."""
    events: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return []
    return events
