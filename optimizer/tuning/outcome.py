"""One trial's per-seed results, judged once: what the sampler is told and what the
recommendation reads.

A worker (or the quality benchmark's trainer) reports per seed a final loss, a validation
loss, the last finite loss and the step it diverged at, if it did. :class:`TrialResult` holds
them with the one rule for which seeds diverged: a seed diverged when it was flagged, or when
its final loss is missing or non-finite although it was not (the server never stores a
non-finite value, so such a seed counts as diverged at the last step). From that it derives
the trial's state, its value, its first divergence step and its last finite loss (stored in
``acprop_trials`` and told to the sampler: service/broker/completion.py, the study mirror)
and the record the recommendation fits (:meth:`TrialResult.record`), so that no two readers
can disagree about a seed. Pure Python.

Why a diverged trial is told with a finite penalty and not `inf`: Optuna stores `+inf` as a
COMPLETE value and lets a single `-inf` become the best trial (see facts.md), and NaN makes a
trial FAIL, which TPE ignores, so the sampler would keep proposing the region that blew up. A
finite value worse than every finished loss ranks the diverged trial last, which is all TPE's
good/bad split needs to steer away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from optimizer.recommendation._records import TrialOutcome

__all__ = ["TrialResult", "divergence_penalty", "finite_mean"]


def finite_mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite entries, or None when there is none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _finite(values: Iterable[float | None] | None) -> tuple[float | None, ...]:
    return tuple(None if v is None or not math.isfinite(v) else float(v) for v in (values or ()))


@dataclass(frozen=True)
class TrialResult:
    """One attempt's results per seed, with non-finite losses as None.

    Attributes:
      final_losses: the last reported training loss of each seed.
      validation_losses: each seed's validation loss (empty when not measured).
      last_finite_losses: each seed's last finite training loss (empty when not sent).
      seeds_diverged_at: per seed, the step it diverged at, or None (the rule above applied).
    """

    final_losses: tuple[float | None, ...]
    validation_losses: tuple[float | None, ...]
    last_finite_losses: tuple[float | None, ...]
    seeds_diverged_at: tuple[int | None, ...]

    @classmethod
    def judge(
        cls,
        *,
        final_losses: Sequence[float | None],
        validation_losses: Sequence[float | None] | None,
        last_finite_losses: Sequence[float | None] | None,
        diverged_at_step: Sequence[int | None] | None,
        steps: int,
    ) -> TrialResult:
        """From a worker's per-seed report. A seed with a missing or non-finite final loss
        that was not flagged diverged at the last step; the list has one entry per final
        loss (or per flag, if more flags came than losses)."""
        final = _finite(final_losses)
        flagged = list(diverged_at_step or [])
        per_seed: list[int | None] = []
        for i in range(max(len(final), len(flagged))):
            step = flagged[i] if i < len(flagged) else None
            if step is None and (i >= len(final) or final[i] is None):
                step = steps if i < len(final) else None
            per_seed.append(None if step is None else int(step))
        return cls(final, _finite(validation_losses), _finite(last_finite_losses), tuple(per_seed))

    @classmethod
    def stored(
        cls,
        *,
        state: str,
        final_losses: Sequence[float | None] | None,
        validation_losses: Sequence[float | None] | None,
        seeds_diverged_at: Sequence[int | None] | None,
        diverged_at_step: int | None,
        value: float | None = None,
    ) -> TrialResult:
        """From a finished row of ``acprop_trials``. A row without trustworthy per-seed steps
        (finished before they were stored, or not one per seed) keeps only the first step any
        seed diverged at, so every seed of a diverged trial counts as diverged, which errs on
        the safe side of the edge."""
        final = _finite(final_losses)
        if not final:
            final = (None if value is None else float(value),)
        diverged = state == "diverged"
        per_seed = tuple(seeds_diverged_at or ())
        if not (
            seeds_diverged_at is not None
            and len(per_seed) == len(final)
            and any(step is not None for step in per_seed) == diverged
        ):
            step = diverged_at_step if diverged_at_step is not None else 0
            per_seed = ((step if diverged else None),) * len(final)
        return cls(final, _finite(validation_losses), (), per_seed)

    @property
    def diverged(self) -> bool:
        """Whether any seed diverged (then the trial gives no loss data)."""
        return any(step is not None for step in self.seeds_diverged_at) or not self.final_losses

    @property
    def state(self) -> str:
        return "diverged" if self.diverged else "complete"

    @property
    def diverged_at_step(self) -> int | None:
        """The first step any seed diverged at; None when none did."""
        steps = [s for s in self.seeds_diverged_at if s is not None]
        return min(steps) if steps else None

    def seed_losses(self) -> tuple[float | None, ...]:
        """Each seed's loss as the models read it: the validation loss where every seed has
        one, else the final training loss."""
        return self.validation_losses if self.on_validation() else self.final_losses

    def on_validation(self) -> bool:
        """Whether :meth:`seed_losses` (and so the value) are validation losses."""
        v = self.validation_losses
        return bool(v) and len(v) == len(self.final_losses) and all(x is not None for x in v)

    @property
    def value(self) -> float | None:
        """The mean of :meth:`seed_losses` of a complete trial; None for a diverged one."""
        return None if self.diverged else finite_mean(self.seed_losses())

    @property
    def last_finite_loss(self) -> float | None:
        """The seeds' mean last finite loss of a diverged trial (the sampler's scale)."""
        return finite_mean(self.last_finite_losses) if self.diverged else None

    def record(
        self, number: int, params: Mapping[str, float], *, confirmation: bool = False
    ) -> TrialOutcome:
        """The recommendation's record of this trial (optimizer.recommendation);
        ``confirmation`` for a trial of the job's confirmation stage."""
        losses = self.seed_losses()
        flags = tuple(step is not None for step in self.seeds_diverged_at)
        return TrialOutcome(number, params, losses, flags[: len(losses)], confirmation)


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
