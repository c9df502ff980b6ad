"""The heartbeat: a background thread that keeps this worker's leases alive.

Owns the set of tokens the worker currently holds and renews them every ~TTL/3, so that two
consecutive missed beats still leave the lease valid. It records which tokens the server says
are no longer held (reaped after a pause, or the job was cancelled) so the training loop can
freeze those lanes at its next chunk boundary. The thread has its own HTTP client: a backoff in
the training thread's call must not delay a renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from worker.client import ClientError, WorkerClient

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews held leases from a daemon thread; `lost()` says which the server took back."""

    def __init__(
        self,
        client: WorkerClient,
        *,
        interval_s: float,
        on_lost: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._client = client
        self._interval_s = interval_s
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._lost: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.beats = 0

    # -- what the loop calls ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self._interval_s + 30)
        self._client.close()

    def set_interval(self, interval_s: float) -> None:
        """Leases carry their TTL; the loop adapts the period to the shortest one it holds."""
        with self._lock:
            changed = interval_s < self._interval_s
            self._interval_s = interval_s
        if changed:
            self._wake.set()

    def track(self, tokens: Iterable[str]) -> None:
        with self._lock:
            self._held.update(tokens)

    def untrack(self, tokens: Iterable[str]) -> None:
        with self._lock:
            for token in tokens:
                self._held.discard(token)
                self._lost.discard(token)

    def mark_lost(self, tokens: Iterable[str]) -> None:
        """The loop learnt of a loss from a 409: stop renewing those tokens."""
        with self._lock:
            for token in tokens:
                if token in self._held:
                    self._held.discard(token)
                    self._lost.add(token)

    def lost(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._lost)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_beat = time.monotonic() + self._interval_s
        while not self._stop.is_set():
            with self._lock:
                interval = self._interval_s
            # Monotonic time jumps forward across a SIGSTOP, so after SIGCONT the overdue
            # beat fires at once and the loss is known within one heartbeat.
            self._wake.wait(timeout=max(0.0, min(next_beat - time.monotonic(), interval)))
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            self.beat()

    def beat(self) -> None:
        """Renew every held token once (also callable from tests)."""
        with self._lock:
            tokens = sorted(self._held)
        if not tokens:
            return
        try:
            answer = self._client.heartbeat(tokens)
        except ClientError as exc:
            # The server is away: keep trying on schedule. If it stays away past the TTL the
            # reaper takes the leases back and the next answer will say so.
            log.warning("heartbeat failed: %s", exc)
            return
        self.beats += 1
        newly_lost: frozenset[str]
        with self._lock:
            # Only tokens still tracked: one untracked meanwhile was finished by the loop.
            newly_lost = frozenset(t for t in answer.lost if t in self._held)
            self._held.difference_update(newly_lost)
            self._lost.update(newly_lost)
        if newly_lost:
            log.debug("server says %d lease(s) are no longer held", len(newly_lost))
            if self._on_lost is not None:
                self._on_lost(newly_lost)
