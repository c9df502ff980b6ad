"""The worker loop: lease trials, train them together, report every chunk, complete, repeat.

Owns the life of a leased batch. All leases of one answer belong to one job, so they share a
task and train as one population of fixed capacity K (padded with frozen dummy lanes, so the
program compiles once per (task, K, S, chunk) in the worker's life). After each chunk the loop
sends one batched report for every live trial, freezes the lanes the server stops (pruned or
cancelled) or whose lease was lost (a 409, or the heartbeat), and when the steps are done sends
one batched completion. On a stop request it finishes the current chunk, completes what is
already decided (pruned, fully diverged), gives the rest back with `release`, and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.client import ClientError, ProtocolError, ServerUnavailable, WorkerClient
from worker.heartbeat import Heartbeat
from worker.journal import Journal
from worker.population import ChunkOutcome, PopulationPool, PopulationRun, lanes_of
from worker.protocol import (
    CompleteAnswer,
    Lease,
    LeaseAnswer,
    Report,
    Result,
    finite_or_none,
)

log = logging.getLogger(__name__)

# A completion retries through up to this many client retry budgets (about 20 s each).
COMPLETE_ROUNDS = 5


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    capacity: int = 8
    seeds: int | None = None  # compiled seed dimension; None: the job's own seed count
    max_trials: int | None = None
    idle_exit_s: float | None = None


@dataclass
class _Lane:
    """One leased trial in the population and what became of it."""

    lease: Lease
    index: int
    ended: str | None = None  # None while training; "pruned", "diverged" or "lost"
    ended_at: float | None = None
    trained_steps: int = 0
    frozen: bool = False  # frozen in the trainer by us (pruned or lost)

    @property
    def token(self) -> str:
        return self.lease.token


@dataclass
class _Stats:
    trials: int = 0
    completed: int = 0
    lost: int = 0
    released: int = 0
    compiles: list[float] = field(default_factory=list)


class WorkerLoop:
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
        self.pool = pool or PopulationPool()
        self.heartbeat = Heartbeat(client.clone(), interval_s=1.0, on_lost=self._heartbeat_lost)
        self.stats = _Stats()
        self._held: dict[str, Lease] = {}  # token -> lease, for the heartbeat's journal lines
        # Tokens inside a `complete` call: the heartbeat may race it and hear "lost" for a
        # trial that was just accepted; that is no loss.
        self._completing: set[str] = set()

    def run(self) -> int:
        """Lease and train until stopped, out of trials (`max_trials`) or idle too long."""
        self.heartbeat.start()
        try:
            return self._run()
        finally:
            self.heartbeat.stop()
            log.info(
                "worker exits: %d trials, %d completed, %d lost, %d released, compiles %s",
                self.stats.trials,
                self.stats.completed,
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
            if not answer.leases:
                idle = time.monotonic() - idle_since
                if opts.idle_exit_s is not None and idle >= opts.idle_exit_s:
                    log.info("idle for %.1fs: exiting", idle)
                    return 0
                wait = answer.retry_after_s if answer.retry_after_s is not None else 1.0
                if opts.idle_exit_s is not None:
                    wait = min(wait, max(0.05, opts.idle_exit_s - idle))
                self.stop.wait(wait)
                continue
            self.train(answer.leases)
            idle_since = time.monotonic()
        return 0

    # -- one leased batch ------------------------------------------------------------------

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
                    self._release([lease.token for lease in group])
                    continue
                try:
                    self._train_group(group)
                except (ValueError, ImportError, LookupError, ArithmeticError) as exc:
                    # This worker cannot train these trials (an unknown or broken task, a
                    # configuration the engine rejects). Stop renewing their leases instead of
                    # releasing them: each expiry counts as an attempt, so a trial no worker
                    # can run ends `failed` after `max_attempts` rather than circulating.
                    log.error("cannot train %d trial(s): %s", len(group), exc, exc_info=True)
                    self.heartbeat.untrack([lease.token for lease in group])
                    self.journal.write("error", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            self.heartbeat.untrack(tokens)
            for token in tokens:
                self._held.pop(token, None)
                self._completing.discard(token)

    def _heartbeat_lost(self, tokens: frozenset[str]) -> None:
        # Runs on the heartbeat thread: journal only; the training thread acts on it at the
        # next chunk boundary.
        for token in tokens:
            lease = self._held.get(token)
            if lease is not None and token not in self._completing:
                t = lease.trial
                log.warning("server took back trial %s (attempt %d)", t.trial_id, t.attempt)
                self.journal.write(
                    "heartbeat_lost", trial_id=t.trial_id, attempt=t.attempt, number=t.number
                )

    def _train_group(self, leases: Sequence[Lease]) -> None:
        first = leases[0].trial
        n_seeds = max(self.options.seeds or 0, len(first.seeds))
        started = time.monotonic()
        run = self.pool.start(
            first.task,
            [lease.trial.config for lease in leases],
            seeds=first.seeds,
            capacity=self.options.capacity,
            n_seeds=n_seeds,
            steps=first.steps,
            chunk_steps=first.report_every,
        )
        if run.compile_s > 0:
            self.stats.compiles.append(run.compile_s)
        lanes = [_Lane(lease, i) for i, lease in enumerate(leases)]
        while not run.done:
            chunk = run.advance()
            self._after_chunk(run, lanes, chunk)
            if all(lane.ended is not None for lane in lanes):
                break
            if self.stop.is_set():
                break
        if self.stop.is_set() and not run.done:
            # Stopping mid-trial: what is decided is completed, the rest goes back.
            live = [lane for lane in lanes if lane.ended is None]
            self._release([lane.token for lane in live])
            lanes = [lane for lane in lanes if lane.ended in ("pruned", "diverged")]
        self._complete(run, lanes, started)

    def _after_chunk(self, run: PopulationRun, lanes: list[_Lane], chunk: ChunkOutcome) -> None:
        now = time.monotonic()
        self._end_lost(lanes, self.heartbeat.lost(), now, via="heartbeat")
        reports: list[Report] = []
        for lane in lanes:
            if lane.ended is not None:
                continue
            lane.trained_steps = chunk.step
            if chunk.all_diverged[lane.index]:
                # Nothing left to learn from it: no more reports; its result goes in `complete`.
                lane.ended, lane.ended_at = "diverged", now
                continue
            losses = tuple(finite_or_none(x) for x in chunk.losses[lane.index])
            reports.append(Report(lane.token, chunk.step, losses))
        if reports:
            self._send_reports(lanes, reports, now)
        # Diverged lanes froze themselves inside the program; pruned and lost ones are
        # frozen here, once, so they stop costing updates from the next chunk on.
        newly = [lane for lane in lanes if lane.ended in ("pruned", "lost") and not lane.frozen]
        for lane in newly:
            lane.frozen = True
        run.freeze([lane.index for lane in newly])

    def _send_reports(self, lanes: list[_Lane], reports: list[Report], now: float) -> None:
        step = reports[0].step
        try:
            answer = self.client.report(reports)
        except ServerUnavailable as exc:
            # Keep training: the leases are still ours until the reaper says otherwise, and
            # a lost report is only a missing intermediate value.
            log.warning("report at step %d failed: %s", step, exc)
            return
        except ProtocolError as exc:
            log.error("report at step %d refused: %s", step, exc)
            return
        by_token = {lane.token: lane for lane in lanes}
        sent = {report.token: report for report in reports}
        for token in answer.accepted:
            t = by_token[token].lease.trial
            self.journal.write(
                "report",
                trial_id=t.trial_id,
                attempt=t.attempt,
                number=t.number,
                step=step,
                losses=list(sent[token].losses),
            )
        self._end_lost(lanes, answer.lost, now, via="report 409")
        for token in answer.stop:
            lane = by_token.get(token)
            if lane is not None and lane.ended is None:
                lane.ended, lane.ended_at = "pruned", now

    def _end_lost(self, lanes: list[_Lane], lost: frozenset[str], now: float, *, via: str) -> None:
        """End the lanes whose lease is gone; `via` says who told us (journalled)."""
        for lane in lanes:
            if lane.token in lost and lane.ended != "lost":
                lane.ended, lane.ended_at = "lost", now
                self.stats.lost += 1
                t = lane.lease.trial
                log.warning("lease of trial %s (attempt %d) lost", t.trial_id, t.attempt)
                self.journal.write(
                    "lost", trial_id=t.trial_id, attempt=t.attempt, number=t.number, via=via
                )
        self.heartbeat.mark_lost(lost)

    def _complete(self, run: PopulationRun, lanes: list[_Lane], started: float) -> None:
        lanes = [lane for lane in lanes if lane.ended != "lost"]
        # A loss seen by the heartbeat while the last chunk ran is not worth a 409.
        self._end_lost(lanes, self.heartbeat.lost(), time.monotonic(), via="heartbeat")
        lanes = [lane for lane in lanes if lane.ended != "lost"]
        if not lanes:
            return
        final = run.finish()
        end = time.monotonic()
        results: list[Result] = []
        for lane in lanes:
            i = lane.index
            results.append(
                Result(
                    token=lane.token,
                    final_losses=tuple(finite_or_none(x) for x in final.final_losses[i]),
                    validation_losses=tuple(finite_or_none(x) for x in final.validation_losses[i]),
                    last_finite_losses=tuple(
                        finite_or_none(x) for x in final.last_finite_losses[i]
                    ),
                    diverged_at_step=tuple(final.diverged_at_step[i]),
                    pruned=lane.ended == "pruned",
                    wall_s=(lane.ended_at or end) - started,
                    compile_s=run.compile_s,
                )
            )
        self._completing.update(r.token for r in results)
        answer = self._send_completion(results)
        if answer is None:
            return
        by_token = {lane.token: lane for lane in lanes}
        for token in answer.accepted:
            t = by_token[token].lease.trial
            self.stats.completed += 1
            self.journal.write(
                "complete",
                trial_id=t.trial_id,
                attempt=t.attempt,
                number=t.number,
                pruned=by_token[token].ended == "pruned",
            )
        self._end_lost(lanes, answer.lost, time.monotonic(), via="complete 409")

    def _send_completion(self, results: list[Result]) -> CompleteAnswer | None:
        """Send the results; a finished trial is worth more than one retry budget, so while the
        heartbeat still holds the leases, keep trying through a longer outage."""
        for round_ in range(COMPLETE_ROUNDS):
            try:
                return self.client.complete(results)
            except ServerUnavailable as exc:
                lost = self.heartbeat.lost()
                results = [r for r in results if r.token not in lost]
                if not results or round_ + 1 == COMPLETE_ROUNDS:
                    break
                log.warning("completion not delivered yet (%s); trying again", exc)
            except ProtocolError as exc:
                log.error("completion of %d trial(s) refused: %s", len(results), exc)
                return None
        # The leases expire and the reaper retries the trials: slower, never wrong.
        log.error(
            "completion of %d trial(s) not delivered; leaving them to the reaper", len(results)
        )
        return None

    def _release(self, tokens: list[str]) -> None:
        if not tokens:
            return
        try:
            released = self.client.release(tokens)
        except ClientError as exc:
            log.warning("release failed (%s); the reaper will take them back", exc)
            return
        self.stats.released += len(released)
        self.journal.write("release", count=len(released))
        log.info("gave back %d lease(s)", len(released))
