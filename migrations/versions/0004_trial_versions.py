"""the library versions a trial was trained with: acprop_trials.versions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A worker sends the jax, jaxlib and optax versions it trained with in each completion; a
learning rate tuned under one optax `acprop` is not the same under another, so the
recommendation lists them and warns when its trials differ. Rows finished before this
revision, or completed by a worker that did not send them, keep it null.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_column("versions")
