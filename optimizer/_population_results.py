"""The population trainer's records: the state of a population being trained
(:class:`Population`), and what it reports per chunk (:class:`ChunkResult`) and at the end
(:class:`FinalResult`). Host-side numpy arrays over the configurations given to ``start``
(padding lanes removed), axes ``[K, S]``.

Invariant: a loss that comes out of a finished lane is finite. The only exception is a lane
that never had a finite loss at all (its initial loss was non-finite, ``diverged_at == 0``);
its losses are NaN here and ``None`` in :meth:`FinalResult.records`, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax

    from optimizer._population_programs import LaneState
    from optimizer.config import ACPropConfig

__all__ = ["ChunkResult", "FinalResult"]


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's report.

    Attributes:
        step: steps taken so far (the last step of this chunk that is within the total).
        loss: ``[K, S]`` the mean training loss over the lane's good steps in this chunk
            (finite and in bound, before freezing); a lane without any repeats its last report
            (initially the loss of step 0).
        step_losses: ``[C, K, S]`` the raw loss of every step of the chunk, including steps
            beyond the total, frozen lanes and the diverging step (may be non-finite; for tests
            and diagnostics, never for reports).
        step_good: ``[C, K, S]`` which of those steps were live and good.
        diverged_at: ``[K, S]`` the step each lane diverged at, -1 if it has not.
        frozen: ``[K, S]`` lanes that no longer train (diverged or pruned).
    """

    step: int
    loss: np.ndarray
    step_losses: np.ndarray
    step_good: np.ndarray
    diverged_at: np.ndarray
    frozen: np.ndarray


@dataclass(frozen=True)
class FinalResult:
    """The outcome of every lane.

    Attributes:
        steps: the number of steps the population ran.
        initial_loss: ``[K, S]`` the loss of step 0 (the initial parameters).
        final_loss: ``[K, S]`` the last loss the lane reported (mean over its good steps of the
            last chunk that had any): the trial's training objective.
        last_finite_loss: ``[K, S]`` the loss of the lane's final parameters at its last good
            step (for a diverged lane, the step before it diverged).
        last_finite_step: ``[K, S]`` that step (0 if none).
        validation_loss: ``[K, S]`` validation loss of the lane's final parameters (for a
            diverged lane, the parameters of its last good step).
        diverged_at: ``[K, S]`` the step the lane diverged at (0: its initial loss was not
            finite), -1 if it did not.
        pruned: ``[K, S]`` lanes frozen by the caller (and not diverged).
        wall_s: wall time spent in the population's programs, compilation included.
    """

    steps: int
    initial_loss: np.ndarray
    final_loss: np.ndarray
    last_finite_loss: np.ndarray
    last_finite_step: np.ndarray
    validation_loss: np.ndarray
    diverged_at: np.ndarray
    pruned: np.ndarray
    wall_s: float

    @classmethod
    def build(
        cls,
        *,
        steps: int,
        initial_loss: np.ndarray,
        reported_loss: np.ndarray,
        last_finite_loss: np.ndarray,
        last_finite_step: np.ndarray,
        validation_loss: np.ndarray,
        diverged_at: np.ndarray,
        pruned: np.ndarray,
        wall_s: float,
    ) -> FinalResult:
        def finite_or_nan(a: np.ndarray) -> np.ndarray:
            # inf becomes NaN: "no finite value" has one representation, never a number.
            a = np.asarray(a, np.float64)
            return np.where(np.isfinite(a), a, np.nan)

        return cls(
            steps=steps,
            initial_loss=finite_or_nan(initial_loss),
            final_loss=finite_or_nan(reported_loss),
            last_finite_loss=finite_or_nan(last_finite_loss),
            last_finite_step=np.asarray(last_finite_step, np.int64),
            validation_loss=finite_or_nan(validation_loss),
            diverged_at=np.asarray(diverged_at, np.int64),
            pruned=np.asarray(pruned, bool),
            wall_s=float(wall_s),
        )

    @property
    def diverged(self) -> np.ndarray:
        """``[K, S]`` lanes that diverged."""
        return self.diverged_at >= 0

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per configuration, per-seed lists, ``None`` for "no value"."""

        def floats(row: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in row]

        return [
            {
                "final_losses": floats(self.final_loss[k]),
                "validation_losses": floats(self.validation_loss[k]),
                "last_finite_losses": floats(self.last_finite_loss[k]),
                "diverged_at_step": [int(d) if d >= 0 else None for d in self.diverged_at[k]],
                "pruned": bool(self.pruned[k].all()),
            }
            for k in range(self.final_loss.shape[0])
        ]


@dataclass
class Population:
    """A population being trained. Mutated by :class:`PopulationTrainer` methods.

    ``step`` is the number of steps taken so far (the last step whose loss was reported);
    lanes ``[n_configs:]`` are padding (copies of the last configuration, frozen from the
    start) when fewer configurations than the trainer's K were given.
    """

    state: LaneState
    data_keys: jax.Array
    configs: tuple[ACPropConfig, ...]
    seeds: tuple[int, ...]
    total_steps: int
    step: int = 0
    pruned: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    wall_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    @property
    def n_configs(self) -> int:
        return len(self.configs)
