"""The worker loop: lease trials, train them together, report every chunk, complete, repeat.

Owns the worker's life: leasing up to its capacity K (waiting the server's hint, or leaving
after `idle_exit_s` or `max_trials`), keeping every held lease heartbeated and journalled, and
handing each lease answer to `worker.batch` (one population of fixed capacity K, padded with
frozen dummy lanes, so the program compiles once per (task, K, S, chunk) in the worker's life).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from optimizer.tasks.trust import TaskTrust
from worker.baselines import BaselineRuns
from worker.batch import BatchContext, PopulationBatch, Stats, release
from worker.client import ClientError, ProtocolError, ServerUnavailable, WorkerClient
from worker.datasets import DEFAULT_CACHE_BYTES, DatasetCache, default_cache_dir, http_fetch
from worker.heartbeat import Heartbeat
from worker.journal import Journal
from worker.population import PopulationPool, lanes_of
from worker.protocol import BaselineLease, Failure, Lease, LeaseAnswer, describe_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """The command line's choices (see `acprop-tuner worker --help`)."""

    worker_id: str
    capacity: int = 8
    seeds: int | None = None  # compiled seed dimension; None: the job's own seed count
    max_trials: int | None = None
    idle_exit_s: float | None = None
    #: Module prefixes of `package.module:factory` tasks this worker may import (besides
    #: built-ins and installed entry points): optimizer/tasks/trust.py.
    allowed_task_modules: tuple[str, ...] = ()
    #: Where users' data sets are kept (None: worker.datasets.default_cache_dir()), and the
    #: most bytes kept there.
    dataset_cache_dir: Path | None = None
    dataset_cache_bytes: int = DEFAULT_CACHE_BYTES


class WorkerLoop:
    """Leases and trains until stopped; `run()` returns the process's exit code."""

    def __init__(
        self,
        client: WorkerClient,
        options: WorkerOptions,
        *,
        stop: threading.Event | None = None,
        journal: Journal | None = None,
        pool: PopulationPool | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.stop = stop or threading.Event()
        self.journal = journal or Journal(None, worker_id=options.worker_id)
        self.datasets = DatasetCache(
            options.dataset_cache_dir or default_cache_dir(),
            options.dataset_cache_bytes,
            http_fetch(client.clone()),
        )
        self.pool = pool or PopulationPool(
            TaskTrust.of(options.allowed_task_modules), datasets=self.datasets
        )
        self.heartbeat = Heartbeat(client.clone(), interval_s=1.0, on_lost=self._heartbeat_lost)
        self.stats = Stats()
        self._held: dict[str, Lease] = {}  # token -> lease, for the heartbeat's journal lines
        self.batches = BatchContext(
            client=client,
            heartbeat=self.heartbeat,
            journal=self.journal,
            pool=self.pool,
            stop=self.stop,
            stats=self.stats,
            capacity=options.capacity,
            seeds=options.seeds,
        )

    def run(self) -> int:
        """Lease and train until stopped, out of trials (`max_trials`) or idle too long."""
        self.heartbeat.start()
        try:
            return self._run()
        finally:
            self.heartbeat.stop()
            log.info(
                "worker exits: %d trials, %d completed, %d baseline runs, %d lost, %d released, "
                "compiles %s",
                self.stats.trials,
                self.stats.completed,
                self.stats.baselines,
                self.stats.lost,
                self.stats.released,
                [round(c, 2) for c in self.stats.compiles],
            )

    def _run(self) -> int:
        opts = self.options
        idle_since = time.monotonic()
        while not self.stop.is_set():
            want = opts.capacity
            if opts.max_trials is not None:
                want = min(want, opts.max_trials - self.stats.trials)
                if want <= 0:
                    return 0
            try:
                answer = self.client.lease(opts.worker_id, want)
            except ServerUnavailable as exc:
                # Counts as idle: a worker told to leave when idle also leaves a dead server.
                log.warning("lease failed: %s", exc)
                answer = LeaseAnswer(leases=(), retry_after_s=1.0)
            except ProtocolError as exc:
                log.error("the server refused this worker: %s", exc)
                return 1
            if not answer.leases and not answer.baselines:
                idle = time.monotonic() - idle_since
                if opts.idle_exit_s is not None and idle >= opts.idle_exit_s:
                    log.info("idle for %.1fs: exiting", idle)
                    return 0
                wait = answer.retry_after_s if answer.retry_after_s is not None else 1.0
                if opts.idle_exit_s is not None:
                    wait = min(wait, max(0.05, opts.idle_exit_s - idle))
                self.stop.wait(wait)
                continue
            if answer.leases:
                self.train(answer.leases)
            if answer.baselines:
                self.train_baselines(answer.baselines)
            idle_since = time.monotonic()
        return 0

    def train(self, leases: Sequence[Lease]) -> None:
        """Train one lease answer to the end (or to a stop request), reporting as it goes."""
        self.stats.trials += len(leases)
        tokens = [lease.token for lease in leases]
        self.heartbeat.set_interval(max(0.1, min(lease.ttl_s for lease in leases) / 3))
        self._held.update((lease.token, lease) for lease in leases)
        self.heartbeat.track(tokens)
        for lease in leases:
            t = lease.trial
            self.journal.write(
                "lease",
                job_id=t.job_id,
                trial_id=t.trial_id,
                number=t.number,
                attempt=t.attempt,
                config=dict(t.config),
                seeds=list(t.seeds),
            )
        try:
            # Trials of one job normally share their schedule and seeds; if not, train each
            # group as its own population, one after the other (all stay heartbeated).
            for group in lanes_of(leases):
                if self.stop.is_set():
                    release(self.batches, [lease.token for lease in group])
                    continue
                try:
                    PopulationBatch(self.batches).train(group)
                except ServerUnavailable as exc:
                    # Only fetching a data set can raise it here (reports and completions
                    # handle their own): give the trials back for later, no attempt lost.
                    log.warning("cannot fetch the trials' data set now (%s)", exc)
                    release(self.batches, [lease.token for lease in group])
                except Exception as exc:
                    # Task code is the operator's, but it can still fail: a task not allowed
                    # here, an import error, a factory raising on its options, a batch that
                    # branches on a traced value, a program the device cannot run. Whatever
                    # it is, it fails these trials (with the reason, on the server), never
                    # this process.
                    self._fail(group, exc)
        finally:
            self.heartbeat.untrack(tokens)
            for token in tokens:
                self._held.pop(token, None)
                self.batches.completing.discard(token)

    def train_baselines(self, leases: Sequence[BaselineLease]) -> None:
        """Train one lease answer's baseline runs (worker/baselines.py), heartbeated."""
        tokens = [lease.token for lease in leases]
        self.heartbeat.set_interval(max(0.1, min(lease.ttl_s for lease in leases) / 3))
        self.heartbeat.track(tokens)
        for lease in leases:
            run = lease.run
            self.journal.write(
                "baseline_lease",
                job_id=run.job_id,
                run_id=run.run_id,
                attempt=run.attempt,
                optimizer=run.optimizer,
                seeds=list(run.seeds),
            )
        try:
            BaselineRuns(self.batches).train(leases)
        finally:
            self.heartbeat.untrack(tokens)
            for token in tokens:
                self.batches.completing.discard(token)

    def _fail(self, group: Sequence[Lease], exc: Exception) -> None:
        error = describe_error(exc)
        log.error("cannot train %d trial(s): %s", len(group), error, exc_info=True)
        tokens = [lease.token for lease in group if lease.token not in self.batches.completing]
        self.heartbeat.untrack(tokens)
        self.journal.write("error", error=error)
        try:
            answer = self.client.fail([Failure(token, error) for token in tokens])
        except ClientError as exc_fail:
            # The leases expire and their trials are retried; the reason stays in this log.
            log.warning("could not report the failure (%s); the reaper will take them", exc_fail)
            return
        log.info(
            "failed %d trial(s) on the server (%d lost)", len(answer.accepted), len(answer.lost)
        )

    def _heartbeat_lost(self, tokens: frozenset[str]) -> None:
        # Runs on the heartbeat thread: journal only; the training thread acts on it at the
        # next chunk boundary.
        for token in tokens:
            lease = self._held.get(token)
            if lease is not None and token not in self.batches.completing:
                t = lease.trial
                log.warning("server took back trial %s (attempt %d)", t.trial_id, t.attempt)
                self.journal.write(
                    "heartbeat_lost", trial_id=t.trial_id, attempt=t.attempt, number=t.number
                )
