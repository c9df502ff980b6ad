"""What a lease call hands a worker: one leased trial or baseline run (the token exists only
here, never in the database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["Grant"]


@dataclass(frozen=True, slots=True)
class Grant:
    """One leased trial (``kind`` "trial": ``trial`` is the trial to train) or baseline run
    (``kind`` "baseline": ``trial`` is the run: optimizer, settings, seeds), as the worker
    receives it."""

    token: str
    expires_at: datetime
    ttl_s: float
    trial: dict[str, Any]
    kind: Literal["trial", "baseline"] = "trial"
