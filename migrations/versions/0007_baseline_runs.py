"""baseline runs: a job's reference optimizers and its check, with their own leases

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A job trains reference optimizers beside its ACProp trials (optimizer/baselines.py), and
ACProp at its recommendation on their seeds (the check). They are not trials (not in the
Optuna study, not in ``n_trials``, never sampled), so they have their own table, and leases
fenced the same way as a trial's (service/db/baseline_models.py). Jobs stored before this
revision have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "ended_at IS NULL"
STATES = "state IN ('waiting', 'running', 'complete', 'diverged', 'failed')"
KINDS = "kind IN ('baseline', 'check')"


def upgrade() -> None:
    op.create_table(
        "acprop_baseline_runs",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("optimizer", sa.String(length=32), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("final_losses", sa.JSON(), nullable=True),
        sa.Column("validation_losses", sa.JSON(), nullable=True),
        sa.Column("seeds_diverged_at", sa.JSON(), nullable=True),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("wall_s", sa.Float(), nullable=True),
        sa.Column("compile_s", sa.Float(), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(STATES, name=op.f("ck_acprop_baseline_runs_state")),
        sa.CheckConstraint(KINDS, name=op.f("ck_acprop_baseline_runs_kind")),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["acprop_jobs.id"],
            name=op.f("fk_acprop_baseline_runs_job_id_acprop_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_baseline_runs")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_acprop_baseline_runs_job_id_number")),
    )
    with op.batch_alter_table("acprop_baseline_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acprop_baseline_runs_job_id_state"), ["job_id", "state"], unique=False
        )
    op.create_table(
        "acprop_baseline_leases",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", BIGINT_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["acprop_baseline_runs.id"],
            name=op.f("fk_acprop_baseline_leases_run_id_acprop_baseline_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_baseline_leases")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_acprop_baseline_leases_token_hash")),
        sa.UniqueConstraint(
            "run_id", "attempt", name=op.f("uq_acprop_baseline_leases_run_id_attempt")
        ),
    )
    with op.batch_alter_table("acprop_baseline_leases", schema=None) as batch_op:
        batch_op.create_index(
            "uq_acprop_baseline_leases_run_id_live",
            ["run_id"],
            unique=True,
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
        batch_op.create_index(
            "ix_acprop_baseline_leases_live_expires_at",
            ["expires_at"],
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )


def downgrade() -> None:
    op.drop_table("acprop_baseline_leases")
    op.drop_table("acprop_baseline_runs")
