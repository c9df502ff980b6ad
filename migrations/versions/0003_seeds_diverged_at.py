"""per-seed divergence of a trial: acprop_trials.seeds_diverged_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A completion carries the step each seed diverged at; `diverged_at_step` keeps only the first
of them. `seeds_diverged_at` keeps the list (one entry per seed, null where the seed did not
diverge), so the recommendation counts diverged seeds instead of every seed of a diverged
trial. Rows finished before this revision keep it null.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seeds_diverged_at", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_column("seeds_diverged_at")
