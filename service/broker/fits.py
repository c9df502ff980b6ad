"""The recommendation fits the lease path needs: the confirmation stage's candidates and the
baselines' check (the recommendation on all of a job's trials). Each is about a second of
numpy and scipy at 5,000 trials (bench recommendation_scale), taken once per job, under the
job's row lock: the broker runs them through a :class:`LeaseFits`, in the calling thread by
default, or in the API's fitting processes (service/recommendation_fitter.py) so that the
fit does not hold the server's interpreter lock while other requests wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from optimizer.recommendation import Recommendation, TrialOutcome, recommend
from optimizer.tuning.confirmation import candidates

__all__ = ["IN_PLACE", "InPlace", "LeaseFits"]


class LeaseFits(Protocol):
    def recommend(self, records: Sequence[TrialOutcome], status: str) -> Recommendation:
        """``optimizer.recommendation.recommend`` on ``records``; raises what it raises."""
        ...

    def candidates(
        self, records: Sequence[TrialOutcome], n: int, lr_high: float = math.inf
    ) -> list[dict[str, float]]:
        """``optimizer.tuning.confirmation.candidates`` on ``records``."""
        ...


class InPlace:
    """The fits in the calling thread."""

    def recommend(self, records: Sequence[TrialOutcome], status: str) -> Recommendation:
        return recommend(records, status=status)  # type: ignore[arg-type]

    def candidates(
        self, records: Sequence[TrialOutcome], n: int, lr_high: float = math.inf
    ) -> list[dict[str, float]]:
        return candidates(records, n, lr_high=lr_high)


IN_PLACE = InPlace()
