"""What a finished trial is worth to the sampler.

A worker reports per-seed losses; this module turns them into one outcome per trial
(`complete` with a finite value, or `diverged` with its step and last finite loss) and decides
the finite penalty a diverged trial is told to the sampler with (the service's study mirror
and the quality benchmark use the same rules). Pure Python.

Why a penalty and not `inf`: Optuna stores `+inf` as a COMPLETE value and lets a single `-inf`
become the best trial (see facts.md), and NaN makes a trial FAIL, which TPE ignores, so the
sampler would keep proposing the region that blew up. A finite value worse than every finished
loss ranks the diverged trial last, which is all TPE's good/bad split needs to steer away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Outcome", "divergence_penalty", "finite_mean", "judge_outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The judged result of one trial attempt."""

    state: str  # "complete" or "diverged"
    value: float | None  # mean final loss over seeds; None when diverged
    diverged_at_step: int | None
    last_finite_loss: float | None


def finite_mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite entries, or None when there is none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def judge_outcome(
    *,
    final_losses: Sequence[float | None],
    validation_losses: Sequence[float | None] | None,
    last_finite_losses: Sequence[float | None] | None,
    diverged_at_step: Sequence[int | None] | None,
    steps: int,
) -> Outcome:
    """Judge one attempt from its per-seed results.

    A trial diverged when any seed diverged (the recommendation must never come from a
    learning rate that blew up in any seed) or when any final loss is missing or non-finite
    although the worker did not flag it: the server never stores a non-finite value, so such a
    seed counts as diverged at the last step. The value of a complete trial is the mean
    validation loss over seeds when every seed has one, otherwise the mean final loss.
    """
    steps_at = [s for s in (diverged_at_step or []) if s is not None]
    unflagged = any(v is None or not math.isfinite(v) for v in final_losses)
    if steps_at or unflagged or not final_losses:
        step = min(steps_at) if steps_at else steps
        last = finite_mean(last_finite_losses or [])
        return Outcome("diverged", None, int(step), last)
    validation = list(validation_losses or [])
    use_validation = len(validation) == len(final_losses) and all(
        v is not None and math.isfinite(v) for v in validation
    )
    value = finite_mean(validation if use_validation else final_losses)
    return Outcome("complete", value, None, None)


def divergence_penalty(
    finished_values: Iterable[float],
    *,
    diverged_at_step: int | None,
    steps: int,
    last_finite_loss: float | None = None,
) -> float:
    """A finite value ranked worse than every finished loss in `finished_values`.

    It sits one spread (at least 1.0) above the worst finished loss, plus up to another spread
    the earlier the trial diverged, so that among diverged trials the ones that blew up at
    step 2 rank below the ones that lasted almost to the end. With nothing finished yet, the
    trial's own last finite loss stands in for the scale.
    """
    values = [v for v in finished_values if math.isfinite(v)]
    if not values and last_finite_loss is not None and math.isfinite(last_finite_loss):
        values = [last_finite_loss]
    hi = max(values) if values else 0.0
    lo = min(values) if values else 0.0
    spread = max(hi - lo, abs(hi), 1.0)
    step = steps if diverged_at_step is None else min(max(diverged_at_step, 0), steps)
    earliness = 1.0 - step / steps if steps > 0 else 0.0
    return hi + spread * (1.0 + earliness)
