"""What a worker writes under its leases, as the broker's use cases take it (the API's
schemas translate into these): reports, results and failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["FailureIn", "ReportIn", "ResultIn"]


@dataclass(frozen=True, slots=True)
class ReportIn:
    """One trial's loss per seed at the end of a chunk of steps."""

    token: str
    step: int
    losses: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class ResultIn:
    """One trial's outcome, per seed, and the versions its worker trained with."""

    token: str
    final_losses: Sequence[float | None]
    validation_losses: Sequence[float | None] | None
    last_finite_losses: Sequence[float | None] | None
    diverged_at_step: Sequence[int | None] | None
    pruned: bool
    wall_s: float | None
    compile_s: float | None
    versions: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FailureIn:
    """A trial its worker could not build or train, and why (class and message, no traceback)."""

    token: str
    error: str
