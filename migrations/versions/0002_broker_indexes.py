"""broker indexes: live leases by expiry, and the Optuna outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The reaper looks every period for live leases past their expiry and for finished trials not
yet written into their Optuna study. Both are small sets inside tables that only grow (ended
leases, finished trials), so partial indexes keep each pass independent of history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "ended_at IS NULL"
OUTBOX = "optuna_trial_id IS NULL AND state IN ('complete', 'pruned', 'diverged', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("acprop_leases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_acprop_leases_live_expires_at",
            ["expires_at"],
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.create_index(
            "ix_acprop_trials_optuna_outbox",
            ["id"],
            postgresql_where=sa.text(OUTBOX),
            sqlite_where=sa.text(OUTBOX),
        )


def downgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_acprop_trials_optuna_outbox",
            postgresql_where=sa.text(OUTBOX),
            sqlite_where=sa.text(OUTBOX),
        )
    with op.batch_alter_table("acprop_leases", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_acprop_leases_live_expires_at",
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
