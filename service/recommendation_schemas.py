"""The recommendation as the API answers it: the optimizer's record
(:class:`optimizer.recommendation.Recommendation`) and, beside it, how fresh it is
(service/recommendation_cache.py serves answers fitted in the background)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from optimizer.recommendation import Recommendation

__all__ = ["Freshness", "RecommendationOut"]


@dataclass(frozen=True)
class Freshness:
    """Which finished trials an answer rests on, against the job as it is now.

    Attributes:
      current: the answer rests on every trial finished now (for a ``final`` answer: always).
      trials_used: finished trials (complete or diverged) the answer was fitted on.
      trials_finished: finished trials now.
      trials_behind: ``trials_finished - trials_used`` (0 when current; negative only if
        trials were deleted since).
      age_s: seconds since the trials it rests on were read.
      refitting: a fit on the newer trials is under way; ask again for it.
      max_lag_s: the bound on ``age_s`` of an answer that is not current: an older one is
        not served (409 ``computing`` instead).
    """

    current: bool
    trials_used: int
    trials_finished: int
    trials_behind: int
    age_s: float
    refitting: bool
    max_lag_s: float


@dataclass(frozen=True)
class RecommendationOut(Recommendation):
    """The recommendation with its ``freshness`` (``None`` only where it was fitted on the
    caller's thread, on every finished trial: the CLI)."""

    freshness: Freshness | None = None

    @classmethod
    def of(cls, rec: Recommendation, freshness: Freshness | None) -> RecommendationOut:
        fields = {f.name: getattr(rec, f.name) for f in dataclasses.fields(Recommendation)}
        return cls(**fields, freshness=freshness)
