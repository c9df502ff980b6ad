"""confirmation trials: acprop_trials.seeds and the source 'confirmation'

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

A job's last trials may confirm its best candidates on fresh seeds
(optimizer/tuning/confirmation.py): such a trial has the source ``confirmation`` and its own
``seeds`` (null for every other trial: it trains the job's seeds 0 .. seeds-1).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "source IN ('warmup', 'sampler')"
_AFTER = "source IN ('warmup', 'sampler', 'confirmation')"


def upgrade() -> None:
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seeds", sa.JSON(), nullable=True))
        batch_op.drop_constraint(op.f("ck_acprop_trials_source"), type_="check")
        batch_op.create_check_constraint(op.f("ck_acprop_trials_source"), _AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM acprop_trials WHERE source = 'confirmation'")
    with op.batch_alter_table("acprop_trials", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_acprop_trials_source"), type_="check")
        batch_op.create_check_constraint(op.f("ck_acprop_trials_source"), _BEFORE)
        batch_op.drop_column("seeds")
