"""initial schema: tenants, keys, jobs, trials, leases, reports

Revision ID: 0001
Revises:
Create Date: 2026-11-25

The service's own tables, all prefixed ``acprop_`` (Optuna's tables live beside them and
are never touched here).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Timestamps are timezone-aware; ids are BIGINT on Postgres and INTEGER (autoincrement) on SQLite.
TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "acprop_tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_acprop_tenants_name")),
    )
    op.create_table(
        "acprop_api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "scope IN ('user', 'worker', 'admin')", name=op.f("ck_acprop_api_keys_scope")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["acprop_tenants.id"],
            name=op.f("fk_acprop_api_keys_tenant_id_acprop_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_acprop_api_keys_secret_hash")),
    )
    with op.batch_alter_table("acprop_api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acprop_api_keys_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "acprop_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("report_every", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("study_name", sa.String(length=100), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("cancelled_at", TIMESTAMP, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'finished', 'cancelled', 'failed')",
            name=op.f("ck_acprop_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["acprop_tenants.id"],
            name=op.f("fk_acprop_jobs_tenant_id_acprop_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_jobs")),
        sa.UniqueConstraint("study_name", name=op.f("uq_acprop_jobs_study_name")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_acprop_jobs_tenant_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("acprop_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_acprop_jobs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_acprop_jobs_tenant_id_created_at"),
            ["tenant_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "acprop_trials",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("optuna_trial_id", sa.Integer(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("final_losses", sa.JSON(), nullable=True),
        sa.Column("validation_losses", sa.JSON(), nullable=True),
        sa.Column("last_finite_loss", sa.Float(), nullable=True),
        sa.Column("diverged_at_step", sa.Integer(), nullable=True),
        sa.Column("wall_s", sa.Float(), nullable=True),
        sa.Column("compile_s", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("source IN ('warmup', 'sampler')", name=op.f("ck_acprop_trials_source")),
        sa.CheckConstraint(
            "state IN ('waiting', 'running', 'complete', 'pruned', 'diverged', 'failed')",
            name=op.f("ck_acprop_trials_state"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["acprop_jobs.id"],
            name=op.f("fk_acprop_trials_job_id_acprop_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_trials")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_acprop_trials_job_id_number")),
    )
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acprop_trials_job_id_state"), ["job_id", "state"], unique=False
        )

    op.create_table(
        "acprop_leases",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("trial_id", BIGINT_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["acprop_trials.id"],
            name=op.f("fk_acprop_leases_trial_id_acprop_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_leases")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_acprop_leases_token_hash")),
        sa.UniqueConstraint("trial_id", "attempt", name=op.f("uq_acprop_leases_trial_id_attempt")),
    )
    with op.batch_alter_table("acprop_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acprop_leases_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            "uq_acprop_leases_trial_id_live",
            ["trial_id"],
            unique=True,
            postgresql_where=sa.text("ended_at IS NULL"),
            sqlite_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "acprop_trial_reports",
        sa.Column("trial_id", BIGINT_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["acprop_trials.id"],
            name=op.f("fk_acprop_trial_reports_trial_id_acprop_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trial_id", "attempt", "step", name=op.f("pk_acprop_trial_reports")
        ),
    )


def downgrade() -> None:
    op.drop_table("acprop_trial_reports")
    with op.batch_alter_table("acprop_leases", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_acprop_leases_trial_id_live",
            postgresql_where=sa.text("ended_at IS NULL"),
            sqlite_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_acprop_leases_expires_at"))

    op.drop_table("acprop_leases")
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acprop_trials_job_id_state"))

    op.drop_table("acprop_trials")
    with op.batch_alter_table("acprop_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acprop_jobs_tenant_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_acprop_jobs_status"))

    op.drop_table("acprop_jobs")
    with op.batch_alter_table("acprop_api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acprop_api_keys_tenant_id"))

    op.drop_table("acprop_api_keys")
    op.drop_table("acprop_tenants")
