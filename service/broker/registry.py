"""The per-process cache of job mirrors, and their synchronisation from the `trials` table.

One `StudyMirror` per job, built on first use from the job's spec and kept in step by `sync`:
it reads the (id, state) of every trial of the job, which is cheap even at thousands of
trials, and loads full rows only for trials that are new or changed since the mirror last
saw them. A mirror that may have diverged from the table (a failed transaction after an
ask) is dropped and rebuilt from the table on next use.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from optimizer.tuning.mirror import TERMINAL_STATES, StudyMirror, TrialSnapshot
from optimizer.tuning.outcome import finite_mean
from service.db.models import Job, Trial, TrialReport

__all__ = ["MirrorRegistry", "load_intermediate"]


def load_intermediate(
    session: Session, keys: Sequence[tuple[int, int]]
) -> dict[int, dict[int, float]]:
    """Mean finite loss per step of each (trial id, attempt), keyed by trial id."""
    out: dict[int, dict[int, float]] = {trial_id: {} for trial_id, _ in keys}
    if not keys:
        return out
    rows = session.execute(
        select(TrialReport.trial_id, TrialReport.step, TrialReport.losses).where(
            tuple_(TrialReport.trial_id, TrialReport.attempt).in_(list(keys))
        )
    )
    for trial_id, step, losses in rows:
        mean = finite_mean(losses)
        if mean is not None:
            out[trial_id][step] = mean
    return out


class MirrorRegistry:
    """Mirrors by job id, least recently used evicted beyond `capacity`."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._mirrors: OrderedDict[uuid.UUID, StudyMirror] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: Job) -> StudyMirror:
        with self._lock:
            mirror = self._mirrors.get(job.id)
            if mirror is None:
                # Seeded per job: a rebuilt mirror samples the same way for the same job.
                mirror = StudyMirror.for_job(job.spec, seed=job.id.int % 2**32)
                self._mirrors[job.id] = mirror
                while len(self._mirrors) > self._capacity:
                    self._mirrors.popitem(last=False)
            self._mirrors.move_to_end(job.id)
            return mirror

    def peek(self, job_id: uuid.UUID) -> StudyMirror | None:
        with self._lock:
            return self._mirrors.get(job_id)

    def drop(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._mirrors.pop(job_id, None)

    def sync(self, session: Session, job_id: uuid.UUID, mirror: StudyMirror) -> None:
        """Bring `mirror` up to date with the job's rows (caller holds `mirror.lock`)."""
        known = mirror.known_states()
        # In trial order: the mirror then sees the same history whatever order the database
        # returns rows in (Postgres moves updated rows), so a seeded job samples reproducibly.
        current = session.execute(
            select(Trial.id, Trial.state).where(Trial.job_id == job_id).order_by(Trial.number)
        ).all()
        changed = [tid for tid, state in current if known.get(tid) != state]
        if changed:
            mirror.sync(load_snapshots(session, changed, need_intermediate=mirror.uses_pruner))


def load_snapshots(
    session: Session, trial_ids: Iterable[int], *, need_intermediate: bool
) -> list[TrialSnapshot]:
    """Snapshots of these trials, with intermediate losses where the sampler or pruner reads
    them (pruned trials always; finished ones when the job has a pruner)."""
    rows = session.execute(
        select(
            Trial.id,
            Trial.state,
            Trial.params,
            Trial.value,
            Trial.last_finite_loss,
            Trial.diverged_at_step,
            Trial.attempt,
        )
        .where(Trial.id.in_(list(trial_ids)))
        .order_by(Trial.number)
    ).all()
    wanted = [
        (r.id, r.attempt)
        for r in rows
        if r.state == "pruned" or (need_intermediate and r.state in TERMINAL_STATES)
    ]
    intermediate = load_intermediate(session, wanted)
    return [
        TrialSnapshot(
            trial_id=r.id,
            state=r.state,
            params=r.params,
            value=r.value,
            last_finite_loss=r.last_finite_loss,
            diverged_at_step=r.diverged_at_step,
            intermediate=intermediate.get(r.id, {}),
        )
        for r in rows
    ]
