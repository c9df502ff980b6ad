"""The table of the workers serving each tenant, as the server has seen them (revision 0009).

Kept by service/broker/workers.py: sightings (a lease call, a heartbeat), and what each
worker finished (trials, failed trials, compile and train seconds, its versions). Read by the
dashboard's workers panel (service/worker_roster.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base
from service.db.types import UTCDateTime

__all__ = ["Worker"]


class Worker(Base):
    """A worker process as the server has seen it (revision 0009), per tenant and the id it
    names itself with when it leases: when it was first and last seen, the capacity it last
    asked for, and what it has finished (service/broker/workers.py keeps these)."""

    __tablename__ = "acprop_workers"
    __table_args__ = (Index(None, "tenant_id", "last_seen_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("acprop_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int | None] = mapped_column(Integer)
    # Trials it finished with a result (complete, pruned or diverged), and trials it failed.
    trials_finished: Mapped[int] = mapped_column(Integer, default=0)
    trials_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds spent compiling and training, counted once per population it completed.
    compile_s: Mapped[float] = mapped_column(Float, default=0.0)
    train_s: Mapped[float] = mapped_column(Float, default=0.0)
    # The jax, jaxlib and optax versions of its last completion (SQL NULL until it sent them,
    # so that an upsert can keep the known ones with COALESCE).
    versions: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
