"""A recommendation (the JSON form of :class:`optimizer.recommendation.Recommendation`) as
text for people: the configuration, what it is expected to reach, how safe it is, the
evidence, and the line of optax to paste. Used by ``acprop-tuner recommend`` and the demo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe"]


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
        f"  learning rates within {rec['tolerance']:.0%} of the best: [{lo:.3g}, {hi:.3g}]"
    )
    lines.append(
        f"  divergence edge here about {edge:.3g}; "
        f"the recommendation stays a factor {rec['margin']:g} or more below it"
        if edge
        else "  no comparable trial diverged"
    )
    lines.append(
        f"  evidence: {ev['n_trials_used']} of {ev['n_trials']} trials ({ev['n_seeds_used']} "
        f"seeds) used, {ev['n_trials_diverged']} diverged; tuned: {', '.join(ev['tuned'])}"
    )
    versions = [v for v in rec.get("versions") or [] if v.get("optax")]
    if len(versions) == 1:
        v = versions[0]
        lines.append(f"  trained with jax {v['jax']}, jaxlib {v['jaxlib']}, optax {v['optax']}")
    lines += [f"  warning: {text}" for text in rec.get("warnings") or []]
    lines += ["", rec["optax"]]
    return "\n".join(lines)
