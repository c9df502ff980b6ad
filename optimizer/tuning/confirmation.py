"""The confirmation stage: a job's last trials train its few best candidates again on fresh
seeds, and the answer is chosen among them by what they measured.

Two seeds per trial and a smooth fit choose well where the loss is smooth and the edge is far,
and badly where the answer sits at a limit of the evidence: at the largest learning rate seen
to train safely (the optimum may lie above it, unseen), or next to an edge two seeds could not
place. So the last ``confirmation_trials(n_trials)`` trials of a job (``CANDIDATES`` of them,
in jobs of ``MIN_TRIALS`` or more) are :func:`candidates`: the answer the trials so far give,
a step above it where a limit of the evidence set it (``UP``), and a step below (``DOWN``),
each on the job's fresh seeds (:func:`confirmation_seeds`: the same for every candidate, so
they are compared on equal terms). Slots the candidates leave free are sampled.
optimizer.recommendation then chooses among the candidates that no
seed of theirs diverged by their mean loss over those fresh seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optimizer.recommendation import NotEnoughEvidence, TrialOutcome, recommend
from optimizer.recommendation._rounding import round_sig

__all__ = [
    "CANDIDATES",
    "DOWN",
    "MIN_TRIALS",
    "UP",
    "candidates",
    "confirmation_seeds",
    "confirmation_trials",
]

#: At most this many candidates are confirmed, in jobs of at least ``MIN_TRIALS`` trials.
CANDIDATES = 3
MIN_TRIALS = 12
#: The probes' factors on the learning rate: above the answer where a limit of the evidence
#: set it, and below it.
UP, DOWN = 2.5, 2.0


def confirmation_trials(n_trials: int) -> int:
    """How many of a job's ``n_trials`` are kept for the confirmation stage (0 for small
    jobs)."""
    return 0 if n_trials < MIN_TRIALS else CANDIDATES


def confirmation_seeds(seeds: int) -> tuple[int, ...]:
    """The fresh seeds every confirmation trial of a job with ``seeds`` seeds trains on."""
    return tuple(range(seeds, 2 * seeds))


def candidates(
    outcomes: Sequence[TrialOutcome], n: int, *, lr_high: float = math.inf
) -> list[dict[str, float]]:
    """The ``n`` configurations to confirm, from the trials so far: the answer they give,
    then (where the answer sits at a limit of the evidence rather than at the loss minimum)
    its learning rate times ``UP`` (at most ``lr_high``), then times ``1 / DOWN``. Empty
    while the trials give no answer; the stage then samples instead."""
    try:
        rec = recommend(outcomes, status="provisional")
    except NotEnoughEvidence:
        return []
    base = dict(rec.config)
    out = [base]
    if rec.bounded_by != "loss":
        up = round_sig(min(base["learning_rate"] * UP, lr_high), 2)
        if up > base["learning_rate"]:
            out.append({**base, "learning_rate": up})
    out.append({**base, "learning_rate": round_sig(base["learning_rate"] / DOWN, 2)})
    return out[:n]
