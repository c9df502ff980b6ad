"""The tables of a job's baseline runs and their leases (revision 0007).

A baseline run trains one reference optimizer on the job's task, seeds and steps
(optimizer/baselines.py), or, as the job's *check*, ACProp at its recommendation on those
seeds. Runs are not trials: they are not in the job's Optuna study, never count towards
``n_trials`` and never reach the sampler, so they have their own table and leases (fenced by
tokens exactly as trial leases are: service/broker/baseline_writes.py). A job has its
baselines ``0 .. B-1`` (in the order its spec names them) and at most one check, number ``B``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, in_values
from service.db.states import BASELINE_STATES, MAX_ERROR, BaselineKind, TrialState
from service.db.types import BigIntId, UTCDateTime, utcnow

__all__ = ["BaselineLease", "BaselineRun"]


class BaselineRun(Base):
    """One reference optimizer (or the check) trained on a job's seeds; retried attempts
    keep the row."""

    __tablename__ = "acprop_baseline_runs"
    __table_args__ = (
        CheckConstraint(in_values("state", BASELINE_STATES), name="state"),
        CheckConstraint(in_values("kind", BaselineKind), name="kind"),
        UniqueConstraint("job_id", "number"),
        Index(None, "job_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("acprop_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default=BaselineKind.BASELINE.value)
    # The reference optimizer (optimizer/baselines.py), or "acprop" for the check.
    optimizer: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, float]] = mapped_column(JSON)
    seeds: Mapped[list[int]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=TrialState.WAITING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    final_losses: Mapped[list[float | None] | None] = mapped_column(JSON)
    validation_losses: Mapped[list[float | None] | None] = mapped_column(JSON)
    # Per seed, the step it diverged at or null (null as a whole until it finished).
    seeds_diverged_at: Mapped[list[int | None] | None] = mapped_column(JSON)
    # A check settled by a trial of the recommended configuration on these seeds: its number
    # (the results are that trial's); null for a run a worker trained.
    trial_number: Mapped[int | None] = mapped_column(Integer)
    wall_s: Mapped[float | None] = mapped_column(Float)
    compile_s: Mapped[float | None] = mapped_column(Float)
    versions: Mapped[dict[str, str] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(MAX_ERROR))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BaselineLease(Base):
    """A worker's hold on one attempt of one baseline run, fenced by a token (stored hashed);
    the same rules as a trial's lease (service/db/models.py ``Lease``)."""

    __tablename__ = "acprop_baseline_leases"
    __table_args__ = (
        UniqueConstraint("run_id", "attempt"),
        Index(
            "uq_acprop_baseline_leases_run_id_live",
            "run_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        Index(
            "ix_acprop_baseline_leases_live_expires_at",
            "expires_at",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("acprop_baseline_runs.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    worker_id: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))
