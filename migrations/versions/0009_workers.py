"""workers as the server has seen them: acprop_workers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

One row per tenant and worker id (the id a worker names itself with when it leases): when it
was first and last seen, the capacity it last asked for, the trials it finished and failed,
its compile and train seconds, and the versions of its last completion. The dashboard shows
the workers serving a tenant from it (service/broker/workers.py keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "acprop_workers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", TIMESTAMP, nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("trials_finished", sa.Integer(), nullable=False),
        sa.Column("trials_failed", sa.Integer(), nullable=False),
        sa.Column("compile_s", sa.Float(), nullable=False),
        sa.Column("train_s", sa.Float(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["acprop_tenants.id"],
            name=op.f("fk_acprop_workers_tenant_id_acprop_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "worker_id", name=op.f("pk_acprop_workers")),
    )
    with op.batch_alter_table("acprop_workers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acprop_workers_tenant_id_last_seen_at"),
            ["tenant_id", "last_seen_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("acprop_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acprop_workers_tenant_id_last_seen_at"))
    op.drop_table("acprop_workers")
