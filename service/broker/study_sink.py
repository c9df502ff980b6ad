"""Writing finished trials into the job's Optuna study in the database, exactly once each.

The stored study is a real Optuna study (readable by optuna-dashboard and by `optuna.load_study`)
with one trial per finished trial of ours, created in one `create_new_trial` call with a
template (params, value, intermediate losses, user attributes), and its id kept in
`trials.optuna_trial_id`.

Where the storage's schema is the one `optuna_bulk` was checked against, the trials are
written in a few batched statements inside our own transaction, atomically with
`optuna_trial_id`. Otherwise Optuna's `create_new_trial` is used, and then exactly once needs
more care, since Optuna never joins our transactions: the finished trial is first
committed in our table (it is then an entry of an outbox: finished, `optuna_trial_id` NULL);
a writer claims outbox rows with `FOR UPDATE SKIP LOCKED`, creates the Optuna trials, stores
their ids and commits, holding only those rows for a few milliseconds. Should a process die
between Optuna's commit and ours, a recovery pass (the reaper, after a grace period) first
looks for the trial in the study by its `acprop_trial_id` attribute before writing it.

Outcomes in Optuna: complete -> COMPLETE with its (finite) value; pruned -> PRUNED with its
intermediate losses; diverged and failed -> FAIL with the step and last finite loss as
attributes. A non-finite value never reaches Optuna (it would store inf as COMPLETE).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.storages._rdb import models as optuna_models
from optuna.trial import FrozenTrial, create_trial
from optuna.trial import TrialState as OptunaState
from sqlalchemy import literal_column, select, update
from sqlalchemy.orm import Session

from optimizer.tuning.policy import StudySpace, search_space
from service.broker import optuna_bulk
from service.broker.registry import load_intermediate
from service.db.models import Job, Trial, TrialState, utcnow
from service.job_status import finish_done_jobs

__all__ = ["TRIAL_ID_ATTR", "write_finished"]

TRIAL_ID_ATTR = "acprop_trial_id"

_SINGLE_WRITER = threading.Lock()

_OPTUNA_STATE = {
    TrialState.COMPLETE.value: OptunaState.COMPLETE,
    TrialState.PRUNED.value: OptunaState.PRUNED,
    TrialState.DIVERGED.value: OptunaState.FAIL,
    TrialState.FAILED.value: OptunaState.FAIL,
}


def write_finished(
    session: Session,
    storage: optuna.storages.BaseStorage,
    trial_ids: Sequence[int] | None = None,
    *,
    finished_before: datetime | None = None,
    recover: bool = False,
    limit: int = 500,
) -> int:
    """Write outbox trials into their Optuna studies; returns how many were written.

    `trial_ids` restricts the pass to those trials (the hot path, right after a completion);
    `finished_before` selects old outbox rows (the recovery pass, with `recover=True`, which
    checks the study for an earlier write before creating the trial).
    """
    stmt = (
        select(Trial, Job.study_name)
        .join(Job, Job.id == Trial.job_id)
        .where(
            Trial.optuna_trial_id.is_(None),
            # Literal values (not bound parameters), so that the planner can prove the
            # partial index ix_acprop_trials_optuna_outbox applies under generic plans too.
            Trial.state.in_([literal_column(f"'{s.value}'") for s in TrialState.finished()]),
        )
        .order_by(Trial.id)
        .limit(limit)
        .with_for_update(of=Trial, skip_locked=True)
    )
    if trial_ids is not None:
        stmt = stmt.where(Trial.id.in_(list(trial_ids)))
    if finished_before is not None:
        stmt = stmt.where(Trial.finished_at < finished_before)
    bulk = optuna_bulk.supported(storage)
    # On Postgres the claimed rows stay locked while Optuna writes (a concurrent writer skips
    # them). On SQLite our open transaction would block Optuna's own connection, so with
    # Optuna's own writes the claim is ended first and a process-wide lock keeps writers apart.
    hold = bulk or session.get_bind().dialect.name == "postgresql"
    with contextlib.nullcontext() if hold else _SINGLE_WRITER:
        rows = session.execute(stmt).all()
        if not rows:
            session.rollback()
            return 0
        intermediate = load_intermediate(session, [(r.Trial.id, r.Trial.attempt) for r in rows])
        # Each job's search space once (its spec is parsed and checked on every read).
        spaces = {
            job_id: search_space(spec)
            for job_id, spec in session.execute(
                select(Job.id, Job.spec).where(Job.id.in_({r.Trial.job_id for r in rows}))
            )
        }
        pending = [
            (
                r.Trial.id,
                r.Trial.job_id,
                r.study_name,
                _template(r.Trial, spaces[r.Trial.job_id], intermediate.get(r.Trial.id, {})),
            )
            for r in rows
        ]
        if bulk:
            updates = _write_bulk(session, pending)
        else:
            if not hold:
                session.rollback()
            updates = _write_one_by_one(storage, pending, recover=recover)
        session.execute(update(Trial), updates)
        finish_done_jobs(session, {job_id for _, job_id, _, _ in pending}, utcnow())
        session.commit()
    return len(updates)


_Pending = tuple[int, uuid.UUID, str, FrozenTrial]


def _write_bulk(session: Session, pending: list[_Pending]) -> list[dict[str, int]]:
    """All trials in our transaction: they join the study atomically with our bookkeeping,
    so a crash leaves either both or neither (no recovery check needed)."""
    updates = []
    by_study: dict[str, list[_Pending]] = {}
    for item in pending:
        by_study.setdefault(item[2], []).append(item)
    studies = optuna_models.StudyModel.__table__
    for name, items in by_study.items():
        study_id = session.scalar(select(studies.c.study_id).where(studies.c.study_name == name))
        if study_id is None:
            raise LookupError(f"the job's Optuna study {name!r} does not exist")
        ids = optuna_bulk.bulk_create_trials(session, study_id, [t for *_, t in items])
        updates += [{"id": i[0], "optuna_trial_id": oid} for i, oid in zip(items, ids, strict=True)]
    return updates


def _write_one_by_one(
    storage: optuna.storages.BaseStorage, pending: list[_Pending], *, recover: bool
) -> list[dict[str, int]]:
    """Optuna's own `create_new_trial`, one transaction per trial; a recovery pass first
    looks for trials an interrupted writer already created."""
    study_ids: dict[str, int] = {}
    existing: dict[str, dict[int, int]] = {}
    updates = []
    for trial_id, _, name, template in pending:
        if name not in study_ids:
            study_ids[name] = storage.get_study_id_from_name(name)
            if recover:
                existing[name] = _written(storage, study_ids[name])
        optuna_id = existing.get(name, {}).get(trial_id)
        if optuna_id is None:
            optuna_id = storage.create_new_trial(study_ids[name], template)
        updates.append({"id": trial_id, "optuna_trial_id": optuna_id})
    return updates


def _written(storage: optuna.storages.BaseStorage, study_id: int) -> dict[int, int]:
    """Our trial id -> Optuna trial id of every trial already written into a study."""
    out = {}
    for frozen in storage.get_all_trials(study_id, deepcopy=False):
        ours = frozen.user_attrs.get(TRIAL_ID_ATTR)
        if ours is not None:
            out[int(ours)] = frozen._trial_id
    return out


def _template(
    trial: Trial, space: StudySpace, intermediate: dict[int, float]
) -> optuna.trial.FrozenTrial:
    params: dict[str, float] = {}
    dists: dict[str, BaseDistribution] = {}
    for name, dist in space.distributions.items():
        value = trial.params.get(name)
        if value is None:
            continue
        value = float(value)
        if isinstance(dist, FloatDistribution) and not dist.low <= value <= dist.high:
            # A warm-start value outside the searched range: widen (Optuna accepts differing
            # ranges of one parameter across trials, not differing kinds).
            dist = FloatDistribution(min(dist.low, value), max(dist.high, value), log=dist.log)
        params[name], dists[name] = value, dist
    state = _OPTUNA_STATE[trial.state]
    value = trial.value if state == OptunaState.COMPLETE else None
    attrs = {
        TRIAL_ID_ATTR: trial.id,
        "number": trial.number,
        "attempt": trial.attempt,
        "state": trial.state,
        "source": trial.source,
        "config": {k: float(v) for k, v in trial.params.items()},
        "final_losses": trial.final_losses,
        "validation_losses": trial.validation_losses,
        "diverged_at_step": trial.diverged_at_step,
        "last_finite_loss": trial.last_finite_loss,
        "wall_s": trial.wall_s,
        "compile_s": trial.compile_s,
        "versions": trial.versions,
        "error": trial.error,
    }
    frozen = create_trial(
        state=state,
        value=value,
        params=params,
        distributions=dists,
        intermediate_values=intermediate,
        user_attrs={k: v for k, v in attrs.items() if v is not None},
    )
    # Our own times (FrozenTrial keeps naive local time, as Optuna does).
    if trial.started_at is not None:
        frozen.datetime_start = trial.started_at.astimezone().replace(tzinfo=None)
    if trial.finished_at is not None:
        frozen.datetime_complete = trial.finished_at.astimezone().replace(tzinfo=None)
    return frozen


def study_trial_count(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """How many trials the job's stored study holds (used by tests and checks)."""
    return len(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))
