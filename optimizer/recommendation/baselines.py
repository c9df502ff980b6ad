"""The answer in context: a job's baselines beside ACProp at its recommendation, on the same
seeds (jax-free).

A job trains reference optimizers (optimizer/baselines.py) on its own seeds; ACProp at the
recommendation is measured on those same seeds by a trial of exactly that configuration, or
by the job's check run. Per baseline the answer carries its validation loss per seed, their
mean and spread, the seeds that diverged, and the relative difference of ACProp's mean
against it, ``(acprop - baseline) / |baseline|`` (negative: ACProp reached a lower loss). A
diverged seed counts with the validation loss of its last good parameters, for ACProp and for
the baselines alike (the quality benchmark's rule). :func:`comparison_line` says it in one
line for people.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["BaselineResult", "SeedRun", "compare", "comparison_line"]

#: Relative differences below this are "the same loss".
SAME = 0.005


@dataclass(frozen=True)
class SeedRun:
    """One run on some seeds: its validation loss per seed (None: no finite value) and which
    seeds diverged; ``state`` is the run's (``waiting``, ``running``, ``complete``,
    ``diverged``, ``failed``)."""

    seeds: tuple[int, ...]
    losses: tuple[float | None, ...] = ()
    diverged: tuple[bool, ...] = ()
    state: str = "complete"
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("complete", "diverged")

    def mean(self) -> float | None:
        """The mean validation loss over every seed; None unless each has a finite one."""
        if not self.finished or len(self.losses) != len(self.seeds) or not self.losses:
            return None
        if any(v is None or not math.isfinite(v) for v in self.losses):
            return None
        return float(statistics.fmean(v for v in self.losses if v is not None))

    def spread(self) -> float | None:
        """The standard deviation over seeds (0 for one seed); None without a mean."""
        if self.mean() is None:
            return None
        values = [float(v) for v in self.losses if v is not None]
        return float(statistics.stdev(values)) if len(values) > 1 else 0.0

    def diverged_seeds(self) -> tuple[int, ...]:
        return tuple(s for s, d in zip(self.seeds, self.diverged, strict=False) if d)


@dataclass(frozen=True)
class BaselineResult:
    """One baseline of a job beside ACProp at the recommendation, on the same seeds.

    Attributes:
      optimizer: the reference optimizer (``adam``, ``prodigy``, ...).
      settings: its settings, every default resolved.
      label: what people call it (``Adam 1e-3``).
      state: its run's state: ``waiting``, ``running``, ``complete``, ``diverged`` (a seed
        diverged) or ``failed`` (``error`` says why).
      seeds: the seeds it trained: the job's own, those its trials train.
      validation_losses: per seed, the validation loss at the end (of the last good
        parameters for a seed that diverged); None where there is none.
      validation_loss: their mean; None until every seed has one.
      seed_std: their standard deviation over seeds.
      diverged_seeds: the seeds that diverged.
      acprop_validation_loss: ACProp at the recommendation on the same seeds, the mean;
        None while it is not measured there.
      acprop_diverged_seeds: the seeds on which ACProp at the recommendation diverged.
      acprop_from: what measured it: ``trial N`` (a trial of exactly that configuration on
        these seeds) or ``check run`` (the job trained it on these seeds for the comparison).
      relative_difference: ``(acprop - baseline) / |baseline|`` of the means: below 0 ACProp
        reached a lower loss. None while either is missing.
      error: why the run failed.
    """

    optimizer: str
    settings: dict[str, float]
    label: str
    state: str
    seeds: tuple[int, ...]
    validation_losses: tuple[float | None, ...] = ()
    validation_loss: float | None = None
    seed_std: float | None = None
    diverged_seeds: tuple[int, ...] = ()
    acprop_validation_loss: float | None = None
    acprop_diverged_seeds: tuple[int, ...] = ()
    acprop_from: str | None = None
    relative_difference: float | None = None
    error: str | None = field(default=None)


def compare(
    baselines: Sequence[tuple[str, Mapping[str, float], str, SeedRun]],
    acprop: SeedRun | None,
    acprop_from: str | None,
) -> tuple[BaselineResult, ...]:
    """Each ``(optimizer, settings, label, run)`` beside ``acprop`` (ACProp at the
    recommendation on the baselines' seeds, or None while it is not measured there). A
    relative difference is given only where both ran on the same seeds."""
    out = []
    acprop_mean = acprop.mean() if acprop is not None else None
    for optimizer, settings, label, run in baselines:
        mean = run.mean()
        same = acprop is not None and tuple(acprop.seeds) == tuple(run.seeds)
        rd = None
        if same and mean is not None and acprop_mean is not None and mean != 0:
            rd = (acprop_mean - mean) / abs(mean)
        out.append(
            BaselineResult(
                optimizer=optimizer,
                settings=dict(settings),
                label=label,
                state=run.state,
                seeds=tuple(run.seeds),
                validation_losses=tuple(run.losses),
                validation_loss=mean,
                seed_std=run.spread(),
                diverged_seeds=run.diverged_seeds(),
                acprop_validation_loss=acprop_mean if same else None,
                acprop_diverged_seeds=acprop.diverged_seeds() if same and acprop else (),
                acprop_from=acprop_from if same else None,
                relative_difference=rd,
                error=run.error,
            )
        )
    return tuple(out)


def _percent(rd: float) -> str:
    pct = abs(rd) * 100
    return f"{pct:.0f} %" if pct >= 1 else f"{pct:.1g} %"


def comparison_line(results: Sequence[BaselineResult]) -> str | None:
    """One line for people: ``ACProp at the recommendation: 12 % lower loss than Adam 1e-3,
    3 % higher than Prodigy``; while ACProp is not measured on the baselines' seeds, what the
    baselines reached so far. None for a job without baselines."""
    if not results:
        return None
    compared = any(r.relative_difference is not None for r in results)
    parts: list[str] = []
    loss_said = False
    for r in results:
        if r.relative_difference is not None:
            rd = r.relative_difference
            if abs(rd) < SAME:
                text = f"the same loss as {r.label}"
            else:
                word = "lower" if rd < 0 else "higher"
                text = f"{_percent(rd)} {word}{'' if loss_said else ' loss'} than {r.label}"
                loss_said = True
        elif r.state in ("waiting", "running"):
            text = f"{r.label} still training"
        elif r.state == "failed":
            text = f"{r.label} failed"
        elif r.validation_loss is None:
            text = f"{r.label} has no finite loss"
        else:
            text = f"{r.label} {r.validation_loss:.4g}"
        if r.diverged_seeds:
            text += f" ({len(r.diverged_seeds)} of {len(r.seeds)} seeds diverged)"
        parts.append(text)
    if not compared:
        measured = any(r.acprop_from is not None for r in results)
        why = (
            "has no comparable loss on their seeds"
            if measured
            else "not yet measured on their seeds"
        )
        return f"Baselines: {', '.join(parts)}; ACProp at the recommendation {why}"
    line = "ACProp at the recommendation: " + ", ".join(parts)
    acprop = next((r for r in results if r.acprop_validation_loss is not None), None)
    if acprop is not None and acprop.acprop_diverged_seeds:
        n, s = len(acprop.acprop_diverged_seeds), len(acprop.seeds)
        line += f"; ACProp diverged on {n} of {s} seeds"
    return line
