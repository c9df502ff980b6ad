"""The workers serving each tenant, as the server sees them (`acprop_workers`).

A worker names itself (`worker_id`) when it leases, and every lease it is granted keeps that
name, so its heartbeats and writes are known to be its own. The server records when each
worker was first and last seen and the capacity it asked for, and adds up what it finished:
trials with a result, failed trials, and its compile and train seconds.

Seconds are counted per completion call, not per trial: a worker completes one population (K
trials trained together by one compiled program) per call, and each of its results carries
the population's compile seconds and the wall seconds since the population started. So a call
adds its largest compile time once, and its largest wall time less that as training time. Both
were checked against the leases' age before they get here (write_checks.py).

Sightings (a lease call, a heartbeat) are throttled per process (`SEEN_EVERY_S`): a worker
that polls every second costs one small write every few seconds, not one per call, and it
is written after the call's own transaction committed, so it never holds a lock that call
needs. Completions and failures always write, inside their transaction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.models import Worker

__all__ = ["SEEN_EVERY_S", "Finished", "Sightings", "record_finished", "record_seen"]

#: How often one process writes that a worker was seen, at most.
SEEN_EVERY_S = 5.0
_MAX_TRACKED = 10_000  # workers remembered by the throttle (forgotten oldest first)


@dataclass(frozen=True, slots=True)
class Finished:
    """What one call finished for one worker: trials with a result, failed trials, and the
    durations its results reported (seconds, or None where a result sent none)."""

    trials: int = 0
    failed: int = 0
    wall_s: Sequence[float | None] = ()
    compile_s: Sequence[float | None] = ()
    versions: Mapping[str, str] | None = None

    def seconds(self) -> tuple[float, float]:
        """(compile, train) seconds of the call's population."""
        compile_s = max((s for s in self.compile_s if s is not None), default=0.0)
        wall_s = max((s for s in self.wall_s if s is not None), default=0.0)
        return compile_s, max(0.0, wall_s - compile_s)


class Sightings:
    """Which (tenant, worker) sightings this process should write now (thread-safe)."""

    def __init__(self, every_s: float = SEEN_EVERY_S) -> None:
        self._every_s = every_s
        self._last: dict[tuple[uuid.UUID, str], float] = {}
        self._lock = threading.Lock()

    def due(self, tenant_id: uuid.UUID, worker_ids: Iterable[str]) -> list[str]:
        now = time.monotonic()
        out = []
        with self._lock:
            for worker_id in dict.fromkeys(worker_ids):
                key = (tenant_id, worker_id)
                last = self._last.get(key)
                if last is None or now - last >= self._every_s:
                    self._last.pop(key, None)
                    self._last[key] = now
                    out.append(worker_id)
            while len(self._last) > _MAX_TRACKED:
                self._last.pop(next(iter(self._last)))
        return out


def _upsert(session: Session, rows: list[dict[str, Any]], update: dict[str, Any]) -> None:
    table = Worker.__table__
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    excluded = stmt.excluded
    values = {
        name: (value(table.c, excluded) if callable(value) else getattr(excluded, name))
        for name, value in update.items()
    }
    session.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id", "worker_id"], set_=values), rows
    )


def _row(tenant_id: uuid.UUID, worker_id: str, now: datetime, **values: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "worker_id": worker_id,
        "first_seen_at": now,
        "last_seen_at": now,
        "capacity": None,
        "trials_finished": 0,
        "trials_failed": 0,
        "compile_s": 0.0,
        "train_s": 0.0,
        "versions": None,
        **values,
    }


def record_seen(
    session: Session,
    tenant_id: uuid.UUID,
    worker_ids: Sequence[str],
    now: datetime,
    *,
    capacity: int | None = None,
) -> None:
    """These workers were seen now (and asked for `capacity`, if given); the caller commits."""
    if not worker_ids:
        return
    rows = [_row(tenant_id, w, now, capacity=capacity) for w in sorted(set(worker_ids))]
    update: dict[str, Any] = {"last_seen_at": None}
    if capacity is not None:
        update["capacity"] = None
    _upsert(session, rows, update)


def record_finished(
    session: Session, tenant_id: uuid.UUID, by_worker: Mapping[str, Finished], now: datetime
) -> None:
    """Add what each worker finished in one call; the caller commits (with the trials)."""
    rows = []
    for worker_id in sorted(by_worker):
        done = by_worker[worker_id]
        compile_s, train_s = done.seconds()
        rows.append(
            _row(
                tenant_id,
                worker_id,
                now,
                trials_finished=done.trials,
                trials_failed=done.failed,
                compile_s=compile_s,
                train_s=train_s,
                versions=dict(done.versions) if done.versions else None,
            )
        )
    if not rows:
        return

    def add(name: str) -> Any:
        return lambda c, excluded: getattr(c, name) + getattr(excluded, name)

    _upsert(
        session,
        rows,
        {
            "last_seen_at": None,
            "trials_finished": add("trials_finished"),
            "trials_failed": add("trials_failed"),
            "compile_s": add("compile_s"),
            "train_s": add("train_s"),
            # A call without versions (a failure) keeps the ones already known.
            "versions": lambda c, excluded: func.coalesce(excluded.versions, c.versions),
        },
    )
