"""A learning-rate sweep: a grid of ACProp configurations trained as one population.

This is the engine's simplest client (the demo uses it, and a job's warm-up sweep can): it
builds the grid, trains it with :class:`~optimizer.population.PopulationTrainer`, and
summarises each configuration over its seeds. Medians over seeds, so one lucky or unlucky seed
does not decide a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.config import ACPropConfig
from optimizer.population import FinalResult, PopulationTrainer
from optimizer.tasks import Task

__all__ = ["SweepRow", "format_table", "grid", "log_spaced", "run_sweep"]


@dataclass(frozen=True)
class SweepRow:
    """One configuration's outcome over its seeds."""

    config: ACPropConfig
    final_loss: float | None  # median over the seeds that have a finite value
    validation_loss: float | None
    n_diverged: int
    n_seeds: int
    first_diverged_at: int | None  # the earliest step any seed diverged at


def log_spaced(low: float, high: float, n: int) -> list[float]:
    """``n`` learning rates from ``low`` to ``high``, evenly spaced in log, rounded to 3
    significant digits so the table and the optax line stay readable."""
    return [float(f"{v:.3g}") for v in np.geomspace(low, high, n)]


def grid(
    learning_rates: Sequence[float], eps_roots: Sequence[float], **fixed: float
) -> list[ACPropConfig]:
    """Every (eps_root, learning rate) pair, eps_root-major, other fields from ``fixed``."""
    return [
        ACPropConfig(learning_rate=lr, eps_root=eps_root, **fixed)
        for eps_root in eps_roots
        for lr in learning_rates
    ]


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def summarise(configs: Sequence[ACPropConfig], result: FinalResult) -> list[SweepRow]:
    rows = []
    for k, config in enumerate(configs):
        diverged = result.diverged_at[k][result.diverged_at[k] >= 0]
        rows.append(
            SweepRow(
                config=config,
                final_loss=_median(result.final_loss[k]),
                validation_loss=_median(result.validation_loss[k]),
                n_diverged=int(diverged.size),
                n_seeds=int(result.diverged_at.shape[1]),
                first_diverged_at=int(diverged.min()) if diverged.size else None,
            )
        )
    return rows


def run_sweep(
    task: Task,
    configs: Sequence[ACPropConfig],
    seeds: Sequence[int],
    steps: int,
    chunk_steps: int = 20,
) -> tuple[list[SweepRow], FinalResult, PopulationTrainer]:
    """Train every configuration x seed as one population; summarise per configuration."""
    trainer = PopulationTrainer(
        task, n_configs=len(configs), n_seeds=len(seeds), chunk_steps=chunk_steps
    )
    result = trainer.train(configs, seeds, steps)
    return summarise(configs, result), result, trainer


def format_table(rows: Sequence[SweepRow]) -> str:
    """A plain-text table, one row per configuration; ``*`` marks the best validation loss
    of each ``eps_root`` among configurations with no diverged seed."""
    best: dict[float, float] = {}
    for r in rows:
        if r.n_diverged == 0 and r.validation_loss is not None:
            e = r.config.eps_root
            best[e] = min(best.get(e, np.inf), r.validation_loss)

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    lines = [
        f"{'eps_root':>9} {'learning_rate':>13} {'final_loss':>10} {'val_loss':>9}  diverged",
        "-" * 58,
    ]
    for r in rows:
        if r.n_diverged:
            div = f"{r.n_diverged}/{r.n_seeds} (step {r.first_diverged_at})"
        else:
            div = f"0/{r.n_seeds}"
        mark = (
            "*" if r.n_diverged == 0 and r.validation_loss == best.get(r.config.eps_root) else " "
        )
        lines.append(
            f"{r.config.eps_root:>9.0e} {r.config.learning_rate:>13.3g} "
            f"{num(r.final_loss):>10} {num(r.validation_loss):>9}{mark} {div}"
        )
    return "\n".join(lines)
