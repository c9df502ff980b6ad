"""Leased baseline runs trained one after another: a reference optimizer on the job's task,
seeds and steps, in one compiled program each (optimizer/references.py), or ACProp at the
job's recommendation (the check) exactly as a trial, in the population program of the job's
trials; then completed, without intermediate reports.

Owns what happens between a lease answer's baseline runs and their completions: a run whose
lease was lost (the heartbeat, or a 409) is dropped; a run that cannot be built or trained
(a task not allowed here, settings this worker's optax rejects) is failed with the reason,
never this process; on a stop request the runs not started yet are given back. The
divergence of a seed is reported as a trial's: the step it diverged at, with the losses of
its last good parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from optimizer.baselines import CHECK_OPTIMIZER
from worker.batch import COMPLETE_ROUNDS, BatchContext, release
from worker.client import ClientError, ProtocolError, ServerUnavailable
from worker.protocol import BaselineLease, Failure, Result, describe_error, finite_or_none

if TYPE_CHECKING:
    from optimizer.references import ReferenceResult

log = logging.getLogger(__name__)

__all__ = ["BaselineRuns", "result_of"]


def result_of(token: str, r: ReferenceResult) -> Result:
    """The completion of one run: per seed its final loss (that of its last good
    parameters), validation loss and divergence step."""
    final = tuple(finite_or_none(x) for x in r.final_loss)
    return Result(
        token=token,
        final_losses=final,
        validation_losses=tuple(finite_or_none(x) for x in r.validation_loss),
        last_finite_losses=final,
        diverged_at_step=tuple(int(d) if d >= 0 else None for d in r.diverged_at),
        pruned=False,
        wall_s=float(r.wall_s),
        compile_s=float(r.compile_s),
    )


class BaselineRuns:
    """Trains the baseline leases of one lease answer, in order."""

    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx

    def train(self, leases: Sequence[BaselineLease]) -> None:
        for i, lease in enumerate(leases):
            if self.ctx.stop.is_set():
                release(self.ctx, [le.token for le in leases[i:]])
                return
            if lease.token in self.ctx.heartbeat.lost():
                self._journal("baseline_lost", lease, via="heartbeat")
                continue
            try:
                result = self._train_one(lease)
            except Exception as exc:  # the task's code or this optax: fail the run, not us
                self._fail(lease, exc)
                continue
            self._complete(lease, result)

    def _train_one(self, lease: BaselineLease) -> Result:
        from optimizer import compile_cache
        from optimizer.references import train_reference

        compile_cache.enable_persistent_cache()
        run = lease.run
        if run.optimizer == CHECK_OPTIMIZER:
            return self._train_check(lease)
        task = self.ctx.pool.task(run.task)
        trained = train_reference(
            task, run.optimizer, run.seeds, run.steps, settings=dict(run.settings)
        )
        if trained.compile_s > 0:
            self.ctx.stats.compiles.append(trained.compile_s)
        return result_of(lease.token, trained)

    def _train_check(self, lease: BaselineLease) -> Result:
        """The check (ACProp at the recommendation) exactly as a trial of that configuration:
        in the population program this worker compiled for the job's trials (same K, S and
        chunk), so it compiles nothing and its losses are those a trial would report."""
        run = lease.run
        population = self.ctx.pool.start(
            run.task,
            [run.settings],
            seeds=run.seeds,
            capacity=self.ctx.capacity,
            n_seeds=max(self.ctx.seeds or 0, len(run.seeds)),
            steps=run.steps,
            chunk_steps=run.report_every,
        )
        started = time.monotonic()
        while not population.done:
            population.advance()
        final = population.finish()
        if population.compile_s > 0:
            self.ctx.stats.compiles.append(population.compile_s)
        return Result(
            token=lease.token,
            final_losses=tuple(finite_or_none(x) for x in final.final_losses[0]),
            validation_losses=tuple(finite_or_none(x) for x in final.validation_losses[0]),
            last_finite_losses=tuple(finite_or_none(x) for x in final.last_finite_losses[0]),
            diverged_at_step=tuple(final.diverged_at_step[0]),
            pruned=False,
            wall_s=time.monotonic() - started,
            compile_s=population.compile_s,
        )

    def _complete(self, lease: BaselineLease, result: Result) -> None:
        self.ctx.completing.add(lease.token)
        for round_ in range(COMPLETE_ROUNDS):
            if lease.token in self.ctx.heartbeat.lost():
                break
            try:
                answer = self.ctx.client.complete([result])
            except ServerUnavailable as exc:
                if round_ + 1 < COMPLETE_ROUNDS:
                    log.warning("baseline completion not delivered yet (%s); trying again", exc)
                continue
            except ProtocolError as exc:
                log.error("baseline completion refused: %s", exc)
                return
            if lease.token in answer.accepted:
                self.ctx.stats.baselines += 1
                self._journal(
                    "baseline_complete",
                    lease,
                    diverged=[d is not None for d in result.diverged_at_step],
                )
            else:
                self._journal("baseline_lost", lease, via="complete 409")
            return
        log.error("baseline run %s not delivered; leaving it to the reaper", lease.run.run_id)

    def _fail(self, lease: BaselineLease, exc: Exception) -> None:
        error = describe_error(exc)
        log.error("cannot train baseline %s: %s", lease.run.optimizer, error, exc_info=True)
        self._journal("baseline_error", lease, error=error)
        try:
            self.ctx.client.fail([Failure(lease.token, error)])
        except ClientError as exc_fail:
            log.warning("could not report the failure (%s); the reaper will take it", exc_fail)

    def _journal(self, event: str, lease: BaselineLease, **fields: object) -> None:
        run = lease.run
        self.ctx.journal.write(
            event,
            job_id=run.job_id,
            run_id=run.run_id,
            attempt=run.attempt,
            optimizer=run.optimizer,
            **fields,
        )
