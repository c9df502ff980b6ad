"""The warm-start sweep: the first population of a job, a log-spaced learning-rate sweep.

Before the sampler proposes anything, a job trains a log-spaced sweep of learning rates over
its search range at the default other settings. The sweep gives the sampler (and the
recommendation) the shape of loss against learning rate and the place where training
diverges, at a cost of about a quarter of the budget.

The points are at most a decade apart with the paper's learning rate 1e-3 among them (moved
by whole decades to stay inside the range where that fits): with few points, a sweep over
the whole default range ``[1e-5, 1]`` spends its points on the range's ends, where nearly every problem trains too
slowly or diverges (an 18-trial job's 3 points per level were 1e-5, 3.2e-3 and 1), while the
decades around 1e-3 (1e-4, 1e-3, 1e-2) show the slope, the valley and the edge of most
problems. With enough points to cover the range at a decade apart or closer, the sweep
spans the whole range, end points included. The choice was measured on the quality
benchmark (docs/recommendation.md, "Warm start").

Because ACProp's divergence edge depends strongly on ``eps_root`` (optax's default 1e-16 can
blow up at learning rates far below the edge for 1e-8, see facts.md), a searched ``eps_root``
is swept at two levels: the paper's 1e-8 and the lowest value of the range (optax's default
in the default space). The second level's learning rates sit half a step above the first's
(an 18-trial job: 1e-4, 1e-3, 1e-2 at 1e-8; 3.2e-4, 3.2e-3, 3.2e-2 at 1e-16), so that
together the levels show the loss at twice the resolution in learning rate, and the paper's
learning rate is not one that diverges at optax's eps_root (the recommendation never
answers a learning rate that diverged in any seed, so a blow-up of 1e-3 at 1e-16 would turn
the paper's setting into 9.9e-4). Measured on the quality benchmark's fast tasks over 26
sampler seeds: mean regret 1.61 -> -0.03 % on logreg, 0.74 -> -0.07 % on mlp-digits,
-10.6 -> -14.9 % on Rosenbrock, -0.11 -> -0.14 % on mnist1d (docs/recommendation.md, "Warm
start"). Like the first level's, the second's grid moves by whole steps to fit the range
(so it can sit half a step below instead); where the range leaves no room for any offset (a
sweep that spans it end to end), both levels share the learning rates. Every other searched setting sits at optax's default,
clamped into its range.

Jax-free: the service calls it when a job is submitted.
"""

from __future__ import annotations

import math

from optimizer.acprop import HYPERPARAMETERS, OPTAX_DEFAULTS, PAPER_EPS_ROOT, PAPER_LEARNING_RATE
from optimizer.space import Fixed, Range, SearchSpace

__all__ = ["anchor_settings", "warm_start_configs"]

#: Widest spacing of the sweep's learning rates, in decades.
MAX_SPACING_DECADES = 1.0
#: Share of the budget the sweep may spend, and the learning rates per eps_root level.
MAX_SHARE = 0.25
MIN_POINTS, MAX_POINTS = 3, 12


def _clamp(value: float, entry: Range) -> float:
    return min(max(value, entry.low), entry.high)


def _log_grid(low: float, high: float, n: int, *, offset: float = 0.0) -> list[float]:
    """``n`` log-spaced points at most ``MAX_SPACING_DECADES`` apart.

    One of them (the middle one, or the one below the middle) is ``PAPER_LEARNING_RATE``
    moved up by ``offset`` steps (0 or 0.5), then by whole steps to fit inside the range;
    where no such placement fits (the range holds the points with less than a step to
    spare, and the anchor off their grid), the points are pushed against the nearer end
    instead. When the points cover the range at that spacing or closer, they span it, end
    points included.
    """
    a, b = math.log10(low), math.log10(high)
    spacing = min(MAX_SPACING_DECADES, (b - a) / (n - 1)) if n > 1 else MAX_SPACING_DECADES
    anchor = math.log10(PAPER_LEARNING_RATE) + offset * spacing
    if n == 1:
        return [low if anchor <= a else high if anchor >= b else 10.0**anchor]
    width = spacing * (n - 1)
    start = anchor - spacing * ((n - 1) // 2)
    # The whole steps k with a <= start + k * spacing <= b - width; the one nearest 0.
    k_low, k_high = (
        math.ceil((a - start) / spacing - 1e-9),
        math.floor((b - width - start) / spacing + 1e-9),
    )
    if k_low <= k_high:
        start += spacing * min(max(0, k_low), k_high)
    else:
        start = min(max(start, a), b - width)
    points = [start + spacing * i for i in range(n)]
    # Exactly the range's end points where the sweep reaches them (no rounding past them).
    return [low if p <= a else high if p >= b else 10.0**p for p in points]


def _lin_grid(low: float, high: float, n: int) -> list[float]:
    if n == 1:
        return [(low + high) / 2]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def anchor_settings(space: SearchSpace) -> dict[str, float]:
    """Every setting but the learning rate at the sweep's first level: a fixed one at its
    value, a searched ``eps_root`` at the paper's 1e-8 and the others at optax's defaults,
    each clamped into its range. The line refinement (optimizer/tuning/line_search.py)
    searches the learning rate at these settings."""
    base: dict[str, float] = {}
    for name in HYPERPARAMETERS[1:]:
        entry = getattr(space, name)
        if isinstance(entry, Fixed):
            base[name] = entry.value
        else:
            anchor = PAPER_EPS_ROOT if name == "eps_root" else OPTAX_DEFAULTS[name]
            base[name] = _clamp(anchor, entry)
    return base


def warm_start_configs(space: SearchSpace, n_trials: int) -> list[dict[str, float]]:
    """The warm-start sweep of a job with ``n_trials`` trials over ``space``.

    Returns full configurations (every hyperparameter), at most ``MAX_SHARE * n_trials``
    of them but at least ``MIN_POINTS`` learning rates per ``eps_root`` level while the budget
    allows; empty when the learning rate is fixed or the budget is too small to sweep.
    On a log learning-rate range the learning rates are log-spaced at most a decade apart
    around 1e-3, the second ``eps_root`` level's half a step higher (see the module
    docstring); with enough points they span the whole range. A linear range is swept evenly
    from end to end.
    """
    lr = space.learning_rate
    if not isinstance(lr, Range) or n_trials < MIN_POINTS:
        return []
    base = anchor_settings(space)

    eps_root = space.eps_root
    levels = [base["eps_root"]]
    if isinstance(eps_root, Range):
        levels = sorted({base["eps_root"], eps_root.low}, reverse=True)

    budget = max(int(n_trials * MAX_SHARE), MIN_POINTS * len(levels))
    per_level = min(MAX_POINTS, budget // len(levels), n_trials // len(levels))
    if per_level < MIN_POINTS:
        levels = levels[:1]
        per_level = min(MAX_POINTS, max(budget, MIN_POINTS), n_trials)
    if lr.log:  # the second level half a step up (see the module docstring)
        grids = [_log_grid(lr.low, lr.high, per_level, offset=0.5 * k) for k in range(len(levels))]
    else:
        grids = [_lin_grid(lr.low, lr.high, per_level)] * len(levels)

    configs: list[dict[str, float]] = []
    for i in range(per_level):  # interleaved, so any prefix of the sweep covers both levels
        for level, grid in zip(levels, grids, strict=True):
            configs.append({"learning_rate": grid[i], **base, "eps_root": level})
    return configs
