"""why a trial failed: acprop_trials.error

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A worker that cannot build or train a task reports it (`POST /api/v1/leases/fail`): the
trial fails with the exception's class and message (bounded, never a traceback), and the API
and the dashboard show it. Null for every other trial.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_column("error")
