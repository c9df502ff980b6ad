"""One leased batch trained as one population: chunks, batched reports, freezing, completion.

Owns what happens between a lease answer and its completion: the population run (padded to the
worker's capacity K), after each chunk one batched report for every live trial, freezing the
lanes the server stops (pruned or cancelled) or whose lease was lost (a 409, or the heartbeat),
one batched completion at the end, and on a stop request: finish the chunk, complete what is
already decided (pruned, fully diverged) and give the rest back with `release`.
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
from worker.population import ChunkOutcome, PopulationPool, PopulationRun
from worker.protocol import CompleteAnswer, Lease, Report, Result, finite_or_none

log = logging.getLogger(__name__)

# A completion retries through up to this many client retry budgets (about 20 s each).
COMPLETE_ROUNDS = 5


@dataclass
class Lane:
    """One leased trial in the population and what became of it."""

    lease: Lease
    index: int
    ended: str | None = None  # None while training; "pruned", "diverged" or "lost"
    ended_at: float | None = None
    frozen: bool = False  # frozen in the trainer by us (pruned or lost)

    @property
    def token(self) -> str:
        return self.lease.token


@dataclass
class Stats:
    """What a worker did in its life (logged when it exits)."""

    trials: int = 0
    completed: int = 0
    lost: int = 0
    released: int = 0
    baselines: int = 0  # baseline runs completed
    compiles: list[float] = field(default_factory=list)


@dataclass
class BatchContext:
    """What every batch of one worker shares."""

    client: WorkerClient
    heartbeat: Heartbeat
    journal: Journal
    pool: PopulationPool
    stop: threading.Event
    stats: Stats
    capacity: int
    seeds: int | None
    # Tokens inside a `complete` call: the heartbeat may race it and hear "lost" for a
    # trial that was just accepted; that is no loss.
    completing: set[str] = field(default_factory=set)


def release(ctx: BatchContext, tokens: list[str]) -> None:
    """Give leases back (a stopping worker); failures leave them to the reaper."""
    if not tokens:
        return
    try:
        released = ctx.client.release(tokens)
    except ClientError as exc:
        log.warning("release failed (%s); the reaper will take them back", exc)
        return
    ctx.stats.released += len(released)
    ctx.journal.write("release", count=len(released))
    log.info("gave back %d lease(s)", len(released))


class PopulationBatch:
    """Trains the leases of one group (same job, task, seeds, schedule) to the end."""

    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.heartbeat = ctx.heartbeat
        self.journal = ctx.journal
        self.pool = ctx.pool
        self.stop = ctx.stop
        self.stats = ctx.stats

    def train(self, leases: Sequence[Lease]) -> None:
        """Train `leases` to their last step, or to a stop request, reporting every chunk."""
        first = leases[0].trial
        n_seeds = max(self.ctx.seeds or 0, len(first.seeds))
        started = time.monotonic()
        run = self.pool.start(
            first.task,
            [lease.trial.config for lease in leases],
            seeds=first.seeds,
            capacity=self.ctx.capacity,
            n_seeds=n_seeds,
            steps=first.steps,
            chunk_steps=first.report_every,
        )
        if run.compile_s > 0:
            self.stats.compiles.append(run.compile_s)
        lanes = [Lane(lease, i) for i, lease in enumerate(leases)]
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
            release(self.ctx, [lane.token for lane in live])
            lanes = [lane for lane in lanes if lane.ended in ("pruned", "diverged")]
        self._complete(run, lanes, started)

    def _after_chunk(self, run: PopulationRun, lanes: list[Lane], chunk: ChunkOutcome) -> None:
        now = time.monotonic()
        self._end_lost(lanes, self.heartbeat.lost(), now, via="heartbeat")
        reports: list[Report] = []
        for lane in lanes:
            if lane.ended is not None:
                continue
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

    def _send_reports(self, lanes: list[Lane], reports: list[Report], now: float) -> None:
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

    def _end_lost(self, lanes: list[Lane], lost: frozenset[str], now: float, *, via: str) -> None:
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

    def _complete(self, run: PopulationRun, lanes: list[Lane], started: float) -> None:
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
        self.ctx.completing.update(r.token for r in results)
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
