"""SQLAlchemy 2.0 typed models of the service's own tables (and nothing of Optuna's).

Every table is prefixed ``acprop_``: Optuna keeps its tables (``studies``, ``trials``, ...)
in the same database, and its ``trials`` would otherwise collide with ours. Constraint names
follow :data:`NAMING_CONVENTION`, so Alembic migrations can name and drop them on every
backend. Relationships are ``lazy="raise"``: a query states what it loads.

Status vocabularies (service/db/states.py) are ``StrEnum`` s stored as short strings guarded by
CHECK constraints (portable between SQLite and Postgres, cheap to extend in a migration).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from optimizer.job_spec import JobSpec
from service.db.base import NAMING_CONVENTION, TABLE_PREFIX, Base, in_values
from service.db.baseline_models import BaselineLease, BaselineRun
from service.db.states import (
    MAX_ERROR,
    BaselineKind,
    JobStatus,
    KeyScope,
    TrialSource,
    TrialState,
)
from service.db.types import BigIntId, JobSpecJSON, UTCDateTime, utcnow
from service.db.worker_models import Worker

_FINISHED = TrialState.finished()
_in = in_values


class Tenant(Base):
    """An owner of keys and jobs; nothing crosses from one tenant to another."""

    __tablename__ = "acprop_tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant", lazy="raise")
    jobs: Mapped[list[Job]] = relationship(back_populates="tenant", lazy="raise")


class ApiKey(Base):
    """A bearer key: only its SHA-256 hash is stored; ``prefix`` identifies it in listings."""

    __tablename__ = "acprop_api_keys"
    __table_args__ = (CheckConstraint(_in("scope", KeyScope), name="scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("acprop_tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys", lazy="raise")


class Job(Base):
    """A tuning job: the validated spec, its budget, its status and its Optuna study."""

    __tablename__ = "acprop_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("acprop_tenants.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    # The complete, defaults-resolved job (optimizer.job_spec.JobSpec), read back typed.
    spec: Mapped[JobSpec] = mapped_column(JobSpecJSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    # spec.budget again, as columns, for the statements that check writes against it in SQL
    # (the report fast path) and count trials; written only with the spec (Job.of_spec).
    n_trials: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    seeds: Mapped[int] = mapped_column(Integer)
    report_every: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    study_name: Mapped[str] = mapped_column(String(100), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    tenant: Mapped[Tenant] = relationship(back_populates="jobs", lazy="raise")

    @classmethod
    def of_spec(cls, spec: JobSpec, **columns: Any) -> Job:
        """A new job row for ``spec``, its budget columns copied from it (the only writer)."""
        b = spec.budget
        return cls(
            spec=spec,
            n_trials=b.n_trials,
            steps=b.steps,
            seeds=b.seeds,
            report_every=b.report_every,
            max_attempts=b.max_attempts,
            **columns,
        )

    trials: Mapped[list[Trial]] = relationship(
        back_populates="job", lazy="raise", passive_deletes=True
    )


class Trial(Base):
    """One configuration of a job, numbered 0 .. n_trials-1; retried attempts keep the row."""

    __tablename__ = "acprop_trials"
    __table_args__ = (
        CheckConstraint(_in("state", TrialState), name="state"),
        CheckConstraint(_in("source", TrialSource), name="source"),
        UniqueConstraint("job_id", "number"),
        Index(None, "job_id", "state"),
        # The broker's Optuna outbox (finished, not yet in the study): scanned by the reaper
        # every period, so it must not cost a pass over every trial ever run.
        Index(
            "ix_acprop_trials_optuna_outbox",
            "id",
            postgresql_where=text(f"optuna_trial_id IS NULL AND {_in('state', _FINISHED)}"),
            sqlite_where=text(f"optuna_trial_id IS NULL AND {_in('state', _FINISHED)}"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("acprop_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16), default=TrialSource.SAMPLER.value)
    state: Mapped[str] = mapped_column(String(16), default=TrialState.WAITING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    final_losses: Mapped[list[float | None] | None] = mapped_column(JSON)
    validation_losses: Mapped[list[float | None] | None] = mapped_column(JSON)
    last_finite_loss: Mapped[float | None] = mapped_column(Float)
    # The first step any seed diverged at (null: none did).
    diverged_at_step: Mapped[int | None] = mapped_column(Integer)
    # Per seed, the step it diverged at or null; null as a whole for rows finished before
    # revision 0003 (and for trials that never completed).
    seeds_diverged_at: Mapped[list[int | None] | None] = mapped_column(JSON)
    wall_s: Mapped[float | None] = mapped_column(Float)
    compile_s: Mapped[float | None] = mapped_column(Float)
    # The jax, jaxlib and optax versions the completing worker trained with (revision 0004);
    # null for older rows and for workers that did not send them.
    versions: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # Why the trial failed, as its worker reported it (revision 0005): the exception's class
    # and message, bounded; null for every other trial.
    error: Mapped[str | None] = mapped_column(String(MAX_ERROR))
    # The seeds it trains (revision 0006): set for confirmation trials, which train fresh
    # ones; null for every other trial, which trains the job's seeds 0 .. seeds-1.
    seeds: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="trials", lazy="raise")
    leases: Mapped[list[Lease]] = relationship(
        back_populates="trial", lazy="raise", passive_deletes=True
    )


class Lease(Base):
    """A worker's hold on one attempt of one trial, fenced by a token (stored hashed)."""

    __tablename__ = "acprop_leases"
    __table_args__ = (
        UniqueConstraint("trial_id", "attempt"),
        # At most one live lease per trial.
        Index(
            "uq_acprop_leases_trial_id_live",
            "trial_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        Index(None, "expires_at"),
        # Live leases by expiry, for the reaper (ended leases accumulate forever).
        Index(
            "ix_acprop_leases_live_expires_at",
            "expires_at",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("acprop_trials.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    worker_id: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))

    trial: Mapped[Trial] = relationship(back_populates="leases", lazy="raise")


class TrialReport(Base):
    """Intermediate losses (one per seed) of one attempt at one step; repeats are no-ops."""

    __tablename__ = "acprop_trial_reports"

    trial_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("acprop_trials.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    losses: Mapped[list[float | None]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dataset(Base):
    """A tenant's data set (revision 0008): canonical ``.npz`` bytes named by their SHA-256
    (optimizer/datasets), in the database so any API replica serves them, loaded only when
    asked for; one row per tenant and hash (docs/architecture.md)."""

    __tablename__ = "acprop_datasets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index(None, "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("acprop_tenants.id", ondelete="CASCADE")
    )
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ = [
    "NAMING_CONVENTION",
    "TABLE_PREFIX",
    "ApiKey",
    "Base",
    "BaselineKind",
    "BaselineLease",
    "BaselineRun",
    "Dataset",
    "Job",
    "JobStatus",
    "KeyScope",
    "Lease",
    "Tenant",
    "Trial",
    "TrialReport",
    "TrialSource",
    "TrialState",
    "Worker",
    "utcnow",
]
