"""Compact reads of a job's trials for tables and plots (the dashboard's): the trials as
columns without their reports, and the loss curves of a few chosen trials.

`GET /jobs/{id}/trials` answers every trial with every report (about 110 kB per 100 trials
of 12 reports and 2 seeds): right for a client that wants the evidence, too much for a page
that draws 5,000 points every two seconds. Here a trial is a row of columns (about 150 bytes),
and a curve is the seeds' mean loss per reported step of the trial's current attempt, at most
`MAX_POINTS` of them (evenly thinned, the last always kept), for at most `MAX_CURVES` trials a
call: both answers are bounded whatever the job's size. Every read is scoped by tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic_core import from_json
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from optimizer.tuning.outcome import TrialResult, finite_mean
from service.db.models import Job, Trial, TrialReport, TrialState
from service.errors import NotFound

__all__ = ["MAX_CURVES", "MAX_POINTS", "Curve", "TrialColumns", "curves", "trial_columns"]

MAX_CURVES = 50
MAX_POINTS = 200
_T = TypeVar("_T")
_OPEN = (TrialState.WAITING.value, TrialState.RUNNING.value)
_WITH_LOSS = (TrialState.COMPLETE.value, TrialState.PRUNED.value)


@dataclass(slots=True)
class TrialColumns:
    """Trials numbered above `after`, column by column (index i is one trial)."""

    number: list[int] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    attempt: list[int] = field(default_factory=list)
    params: dict[str, list[float | None]] = field(default_factory=dict)
    value: list[float | None] = field(default_factory=list)
    on_validation: list[bool] = field(default_factory=list)
    diverged_at_step: list[int | None] = field(default_factory=list)
    last_step: list[int | None] = field(default_factory=list)
    wall_s: list[float | None] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    next_after: int | None = None


@dataclass(frozen=True, slots=True)
class Curve:
    number: int
    state: str
    attempt: int
    diverged_at_step: int | None
    steps: list[int]
    loss: list[float | None]


def _check_owned(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    if session.scalar(select(Job.id).where(Job.id == job_id, Job.tenant_id == tenant_id)) is None:
        raise NotFound(f"no job {job_id}")


def trial_columns(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, *, after: int, limit: int
) -> TrialColumns:
    """Trials numbered above `after` in order, at most `limit`; `next_after` pages on.
    `last_step` is the last reported step of a waiting or running trial (null otherwise)."""
    _check_owned(session, tenant_id, job_id)
    # The JSON columns come as text and are parsed in one call per column: 15,000 separate
    # json.loads calls (a driver's per-row decoding) cost most of a 5,000-trial page.
    rows = session.execute(
        select(
            Trial.id,
            Trial.number,
            Trial.state,
            Trial.source,
            Trial.attempt,
            cast(Trial.params, Text).label("params"),
            Trial.value,
            cast(Trial.final_losses, Text).label("final_losses"),
            cast(Trial.validation_losses, Text).label("validation_losses"),
            Trial.diverged_at_step,
            Trial.wall_s,
            Trial.error,
        )
        .where(Trial.job_id == job_id, Trial.number > after)
        .order_by(Trial.number)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    open_ids = [r.id for r in rows if r.state in _OPEN]
    last_steps: dict[int, int] = {}
    if open_ids:
        last_steps = dict(
            session.execute(  # type: ignore[arg-type]
                select(TrialReport.trial_id, func.max(TrialReport.step))
                .join(
                    Trial,
                    (Trial.id == TrialReport.trial_id) & (Trial.attempt == TrialReport.attempt),
                )
                .where(TrialReport.trial_id.in_(open_ids))
                .group_by(TrialReport.trial_id)
            ).all()
        )
    session.rollback()
    params = _parse_all(r.params for r in rows)
    finals = _parse_all(r.final_losses for r in rows)
    validations = _parse_all(r.validation_losses for r in rows)
    out = TrialColumns()
    names = sorted({name for p in params for name in (p or {})})
    out.params = {name: [(p or {}).get(name) for p in params] for name in names}
    for r, final, validation in zip(rows, finals, validations, strict=True):
        out.number.append(r.number)
        out.state.append(r.state)
        out.source.append(r.source)
        out.attempt.append(r.attempt)
        out.value.append(r.value)
        out.on_validation.append(
            r.state in _WITH_LOSS and _on_validation(r.state, r.value, final, validation)
        )
        out.diverged_at_step.append(r.diverged_at_step)
        out.last_step.append(last_steps.get(r.id))
        out.wall_s.append(r.wall_s)
        if r.error:
            out.errors[r.number] = r.error
    out.next_after = rows[-1].number if (more and rows) else None
    return out


def _parse_all(texts: Iterable[str | None]) -> list[Any]:
    """JSON texts (None: SQL NULL) parsed in one call (pydantic's parser: about 4x the
    standard library's; NaN and Infinity accepted, as json.loads does)."""
    return list(from_json("[" + ",".join(t if t is not None else "null" for t in texts) + "]"))


def _on_validation(state: str, value: float | None, final: Any, validation: Any) -> bool:
    """Whether the trial's value is its validation loss (the one rule: TrialResult)."""
    result = TrialResult.stored(
        state=state,
        final_losses=final,
        validation_losses=validation,
        seeds_diverged_at=None,
        diverged_at_step=None,
        value=value,
    )
    return result.on_validation()


def curves(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, numbers: Sequence[int]
) -> list[Curve]:
    """The loss curves of the job's trials numbered `numbers` (at most `MAX_CURVES`; numbers
    the job does not have are left out), in number order."""
    _check_owned(session, tenant_id, job_id)
    wanted = sorted(set(numbers))[:MAX_CURVES]
    if not wanted:
        return []
    trials = session.execute(
        select(Trial.id, Trial.number, Trial.state, Trial.attempt, Trial.diverged_at_step)
        .where(Trial.job_id == job_id, Trial.number.in_(wanted))
        .order_by(Trial.number)
    ).all()
    points: dict[int, list[tuple[int, list[float | None]]]] = {t.id: [] for t in trials}
    if trials:
        for trial_id, step, losses in session.execute(
            select(TrialReport.trial_id, TrialReport.step, TrialReport.losses)
            .join(
                Trial, (Trial.id == TrialReport.trial_id) & (Trial.attempt == TrialReport.attempt)
            )
            .where(TrialReport.trial_id.in_(list(points)))
            .order_by(TrialReport.trial_id, TrialReport.step)
        ):
            points[trial_id].append((step, losses))
    session.rollback()
    out = []
    for t in trials:
        kept = _thin(points[t.id], MAX_POINTS)
        out.append(
            Curve(
                number=t.number,
                state=t.state,
                attempt=t.attempt,
                diverged_at_step=t.diverged_at_step,
                steps=[step for step, _ in kept],
                loss=[finite_mean(losses) for _, losses in kept],
            )
        )
    return out


def _thin(items: list[_T], most: int) -> list[_T]:
    """At most `most` of `items`, evenly spaced, the first and the last always kept."""
    if len(items) <= most:
        return items
    last = len(items) - 1
    picks = sorted({round(i * last / (most - 1)) for i in range(most)})
    return [items[i] for i in picks]
