"""users' data sets: acprop_datasets

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-10

A tenant uploads a data set (`POST /api/v1/datasets`); the service keeps its canonical
``.npz`` bytes in the database, named by their SHA-256, with the summary of its checks
(optimizer/datasets). A job trains a built-in model family on it, and workers fetch it by
hash over HTTP (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "acprop_datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["acprop_tenants.id"],
            name=op.f("fk_acprop_datasets_tenant_id_acprop_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acprop_datasets")),
        sa.UniqueConstraint(
            "tenant_id", "sha256", name=op.f("uq_acprop_datasets_tenant_id_sha256")
        ),
    )
    op.create_index(
        op.f("ix_acprop_datasets_tenant_id_created_at"),
        "acprop_datasets",
        ["tenant_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_acprop_datasets_tenant_id_created_at"), table_name="acprop_datasets")
    op.drop_table("acprop_datasets")
