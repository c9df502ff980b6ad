"""Line refinement: learning rates proposed on the job's *anchor line* (every other setting at
its anchor: ``eps_root`` 1e-8, the rest at optax's defaults, each clipped to the job's range)
by bracketing and bisection in log learning rate.

A sampler spread over learning rate and ``eps_root`` spends a small budget thinly: with 18
trials of 2 seeds, the learning rates it tries near the optimum are a decade or more apart on
many tasks, and where the loss is steep in the learning rate (an optimum next to the
divergence edge, an under-trained convex problem) the answer misses by tens of percent. One
line, searched the way a practitioner searches it, pins the optimum down: step up (or down) by
half a decade until the best learning rate has a neighbour on both sides, then bisect the
wider of the two gaps next to the best, down to a resolution, and hand back to the sampler.
Pending (running) trials count as taken, so a population of K asks spreads its points.

Pure Python; :func:`propose` works on ``log10`` learning rates.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

__all__ = ["MIN_GAP", "STEP", "propose"]

#: Step (decades) taken beyond the explored line while the best learning rate is at its end.
STEP = 0.5
#: Refinement stops where the gaps next to the best are this narrow (decades; 0.05 ~ 12 %).
MIN_GAP = 0.05
_SAME = 1e-9


def _next(
    done: Sequence[tuple[float, float | None]],
    taken: Sequence[float],
    low: float,
    high: float,
) -> float | None:
    if not done:
        return _fill(taken, low, high)
    safe = [(u, v) for u, v in done if v is not None]
    if not safe:
        # Every learning rate measured on the line diverged: a decade below the lowest.
        target = max(low, min(taken) - 2.0 * STEP)
        return target if min(taken) - target > MIN_GAP else None
    best_u = min(safe, key=lambda p: (p[1], p[0]))[0]
    done_above = [u for u, _ in done if u > best_u + _SAME]
    done_below = [u for u, _ in done if u < best_u - _SAME]
    above = [u for u in taken if u > best_u + _SAME]
    below = [u for u in taken if u < best_u - _SAME]
    if not done_above and len(above) < 2:
        # The best is the highest learning rate measured: step up beyond what is taken (at
        # most two steps ahead of the results).
        top = max(above, default=best_u)
        if top < high - MIN_GAP:
            return min(high, top + STEP)
    if not done_below and len(below) < 2:
        bottom = min(below, default=best_u)
        if bottom > low + MIN_GAP:
            return max(low, bottom - STEP)
    gaps = []
    if above:
        c = min(above)
        gaps.append((c - best_u, (best_u + c) / 2.0))
    if below:
        a = max(below)
        gaps.append((best_u - a, (a + best_u) / 2.0))
    gaps = [g for g in gaps if g[0] > 2.0 * MIN_GAP]
    if not gaps:
        return None
    return max(gaps)[1]


def _fill(taken: Sequence[float], low: float, high: float) -> float | None:
    """Nothing measured yet (a population asked before the sweep finished): the point
    farthest from every point taken, a step beyond either end at most."""
    if not taken:
        return (low + high) / 2.0
    pts = sorted(taken)
    options = [((b - a) / 2.0, (a + b) / 2.0) for a, b in itertools.pairwise(pts)]
    # Beyond an end the new point's distance is its step; inner gaps first on a tie.
    if pts[0] > low + MIN_GAP:
        below = max(low, pts[0] - STEP)
        options.append((0.99 * (pts[0] - below), below))
    if pts[-1] < high - MIN_GAP:
        above = min(high, pts[-1] + STEP)
        options.append((0.99 * (above - pts[-1]), above))
    options = [o for o in options if o[0] > MIN_GAP]
    if not options:
        return None
    # Widest first; on a tie, the point nearer the middle of what is taken (both ways out).
    middle = (pts[0] + pts[-1]) / 2.0
    return max(options, key=lambda o: (round(o[0], 9), -abs(o[1] - middle), o[1]))[1]


def propose(
    done: Sequence[tuple[float, float | None]],
    pending: Sequence[float],
    n: int,
    *,
    low: float,
    high: float,
) -> list[float]:
    """Up to ``n`` new ``log10`` learning rates on the line, in ``[low, high]``.

    Args:
      done: the line's finished trials as ``(log10 learning rate, loss)``, loss None for a
        trial that diverged.
      pending: ``log10`` learning rates of the line's trials still running or waiting.
      n: how many to propose.
      low, high: the learning-rate range in ``log10``.

    Returns:
      Fewer than ``n`` (possibly none) once the line is refined to :data:`MIN_GAP`: the
      caller samples the rest.
    """
    taken = [u for u, _ in done] + list(pending)
    out: list[float] = []
    for _ in range(n):
        u = _next(done, [*taken, *out], low, high)
        if u is None or any(abs(u - t) < _SAME for t in [*taken, *out]):
            break
        out.append(u)
    return out
