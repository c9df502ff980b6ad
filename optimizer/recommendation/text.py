"""A recommendation (the JSON form of :class:`optimizer.recommendation.Recommendation`) as
text for people: the configuration, what it is expected to reach, how safe it is, the
evidence, and the line of optax to paste. Used by ``acprop-tuner recommend`` and the demo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe"]

_BOUNDED_BY = {
    "loss": lambda rec: "the loss (the best predicted learning rate is below every limit)",
    "edge": lambda rec: f"the divergence edge (a factor {rec['margin']:g} below it)",
    "evidence": lambda rec: (
        "the evidence: the largest learning rate seen to train without "
        "divergence nearby (safety is not extrapolated; try higher ones to go further)"
    ),
    "range": lambda rec: "the range: the highest learning rate the trials explored",
    "confirmation": lambda rec: (
        "the confirmation: the trials' answer trained again on fresh seeds beside a "
        "step above and below, kept unless another measured better beyond the seed noise "
        "(a candidate that diverged never counts)"
    ),
}


def _risk(risk: Mapping[str, Any]) -> str:
    n, d = risk["n_seeds"], risk["n_diverged"]
    bound = f"at most {risk['upper_bound']:.0%} ({risk['confidence']:.0%} bound)"
    if not n:
        return f"about {risk['probability']:.0%} by the model alone; no seed measured it, {bound}"
    head = f"about {risk['probability']:.0%}, {bound}, from {d} of {n} nearby seeds diverged"
    if risk["thin"]:
        head += "; the evidence is thin: more seeds here would narrow it"
    if not risk["meets_target"]:
        head += f"; above the {risk['target']:.0%} aimed for"
    return head


def describe(rec: Mapping[str, Any]) -> str:
    """A few lines describing ``rec``; the last line is the optax call."""
    ev, exp = rec["evidence"], rec["expected_loss"]
    lo, hi = rec["lr_interval"]
    edge = rec.get("divergence_lr")
    lines = [f"Recommended initial configuration for ACProp ({rec['status']}):"]
    lines.append(f"  learning_rate  {rec['learning_rate']:.3g}")
    lines += [
        f"  {name:<14} {rec[name]:.3g}" for name in ("b1", "b2", "eps", "eps_root", "weight_decay")
    ]
    lines.append(
        f"  expected loss  {exp['mean']:.4g} (seed spread {exp['seed_std']:.2g}, "
        f"model uncertainty {exp['model_std']:.2g})"
    )
    lines.append(
        f"  good learning rates here: [{lo:.3g}, {hi:.3g}] (as good as the evidence shows)"
    )
    lines.append(f"  set by: {_BOUNDED_BY[rec.get('bounded_by', 'loss')](rec)}")
    lines.append(
        f"  divergence edge here about {edge:.3g} ({edge / rec['learning_rate']:.3g}x the "
        "recommendation)"
        if edge
        else "  no comparable trial diverged"
    )
    risk = rec.get("risk")
    if risk:
        lines.append(f"  divergence risk of a fresh seed: {_risk(risk)}")
    lines.append(
        f"  evidence: {ev['n_trials_used']} of {ev['n_trials']} trials ({ev['n_seeds_used']} "
        f"seeds) used, {ev['n_trials_diverged']} diverged; tuned: {', '.join(ev['tuned'])}"
    )
    versions = [v for v in rec.get("versions") or [] if v.get("optax")]
    if len(versions) == 1:
        v = versions[0]
        lines.append(f"  trained with jax {v['jax']}, jaxlib {v['jaxlib']}, optax {v['optax']}")
    lines += [f"  warning: {text}" for text in rec.get("warnings") or []]
    lines += _baselines(rec)
    lines += ["", rec["optax"]]
    return "\n".join(lines)


def _baselines(rec: Mapping[str, Any]) -> list[str]:
    """The job's baselines beside the answer, on the same seeds, and the one-line comparison."""
    baselines = rec.get("baselines") or []
    if not baselines:
        return []
    seeds = len(baselines[0].get("seeds") or [])
    lines = [f"  baselines (the same {seeds} seeds and steps, each at its settings):"]
    for b in baselines:
        mean, std = b.get("validation_loss"), b.get("seed_std")
        shown = f"{mean:.4g} (seed spread {std:.2g})" if mean is not None else b["state"]
        if b.get("diverged_seeds"):
            shown += f", {len(b['diverged_seeds'])} of {seeds} seeds diverged"
        if b.get("error"):
            shown += f": {b['error']}"
        lines.append(f"    {b['label']:<22} {shown}")
    if rec.get("comparison"):
        lines.append(f"  {rec['comparison']}")
    return lines
