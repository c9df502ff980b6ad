"""A job's baseline runs as the API shows them: beside its recommendation (each reference
optimizer against ACProp at the recommendation on the same seeds) and in the job's view.

Composed onto the recommendation after it is computed (:func:`with_baselines`), apart from
its rules: ACProp's side of the comparison is the job's check (service/broker/
baseline_leasing.py: a trial of exactly the recommended configuration on the baselines'
seeds, or a run the job trained there) when its configuration is the recommendation's;
otherwise (while the job runs, or an answer that changed since) the comparison waits, and
each baseline still shows its own losses. Reads a few rows per call: one per baseline.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from optimizer.acprop import HYPERPARAMETERS
from optimizer.baselines import Baseline, BaselineError
from optimizer.recommendation import Recommendation
from optimizer.recommendation.baselines import SeedRun, compare, comparison_line
from service.db.models import BaselineKind, BaselineRun

__all__ = [
    "BaselineStatus",
    "baseline_runs",
    "baseline_statuses",
    "beside",
    "label_of",
    "same_config",
    "with_baselines",
]

R = TypeVar("R", bound=Recommendation)

CHECK_LABEL = "ACProp at the recommendation (check)"


def same_config(params: Mapping[str, Any], config: Mapping[str, float]) -> bool:
    """Whether ``params`` hold exactly the six ACProp settings of ``config``."""
    return all(
        isinstance(params.get(name), int | float)
        and math.isclose(float(params[name]), float(config[name]), rel_tol=1e-9, abs_tol=0.0)
        for name in HYPERPARAMETERS
    )


def label_of(run: BaselineRun) -> str:
    """What people call a run: the baseline's label, or the check's."""
    if run.kind == BaselineKind.CHECK.value:
        return CHECK_LABEL
    try:
        return Baseline(run.optimizer, dict(run.settings)).label
    except BaselineError:  # settings stored under another vocabulary: say what was stored
        return run.optimizer


def _seed_run(run: BaselineRun) -> SeedRun:
    seeds = tuple(int(s) for s in run.seeds)
    losses: Sequence[float | None] = run.validation_losses or ()
    if len(losses) != len(seeds) or any(v is None for v in losses):
        losses = run.final_losses or ()  # a worker that measured no validation loss
    per_seed = run.seeds_diverged_at or ()
    diverged = tuple(s is not None for s in per_seed) if len(per_seed) == len(seeds) else ()
    return SeedRun(
        seeds=seeds,
        losses=tuple(losses),
        diverged=diverged or (run.state == "diverged",) * len(seeds),
        state=run.state,
        error=run.error,
    )


def _runs(session: Session, job_ids: Sequence[uuid.UUID]) -> list[BaselineRun]:
    if not job_ids:
        return []
    return list(
        session.scalars(
            select(BaselineRun)
            .where(BaselineRun.job_id.in_(list(job_ids)))
            .order_by(BaselineRun.job_id, BaselineRun.number)
        )
    )


def with_baselines(session: Session, job_id: uuid.UUID, rec: R) -> R:
    """``rec`` with the job's baselines beside it, on the same seeds (unchanged for a job
    without baselines). Ends its read."""
    runs = baseline_runs(session, job_id)
    session.rollback()
    return beside(rec, runs)


def baseline_runs(session: Session, job_id: uuid.UUID) -> list[BaselineRun]:
    """The job's baseline runs (its check among them), for :func:`beside`."""
    return _runs(session, [job_id])


def beside(rec: R, runs: Sequence[BaselineRun]) -> R:
    """``rec`` with the baseline ``runs`` of its job beside it (unchanged without any)."""
    if not runs:
        return rec
    check = next((r for r in runs if r.kind == BaselineKind.CHECK.value), None)
    acprop, acprop_from = None, None
    if (
        check is not None
        and check.state in ("complete", "diverged")
        and same_config(check.settings, rec.config)
    ):
        acprop = _seed_run(check)
        acprop_from = (
            f"trial {check.trial_number}" if check.trial_number is not None else "check run"
        )
    results = compare(
        [
            (r.optimizer, r.settings, label_of(r), _seed_run(r))
            for r in runs
            if r.kind == BaselineKind.BASELINE.value
        ],
        acprop,
        acprop_from,
    )
    return replace(rec, baselines=results, comparison=comparison_line(results))


@dataclass(frozen=True, slots=True)
class BaselineStatus:
    """One baseline run of a job, as the job's view lists it."""

    kind: str
    optimizer: str
    label: str
    settings: dict[str, float]
    state: str


def baseline_statuses(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[BaselineStatus]]:
    """Each job's baseline runs (its check last), in one query."""
    out: dict[uuid.UUID, list[BaselineStatus]] = {job_id: [] for job_id in job_ids}
    for r in _runs(session, job_ids):
        out[r.job_id].append(
            BaselineStatus(r.kind, r.optimizer, label_of(r), dict(r.settings), r.state)
        )
    return out
