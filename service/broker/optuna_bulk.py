"""Writing many finished trials into an Optuna RDB study in a handful of statements.

`RDBStorage.create_new_trial(template_trial=...)` is Optuna's public way to add a finished
trial, but it costs about 3 round trips per intermediate value and 2-3 per parameter and
attribute: some 75 statements for a trial with 20 reports, 30-130 ms each trial on Postgres
here, more than Optuna's whole ask/report/tell loop. This module writes the same rows (through
Optuna's own table definitions, so types and enum encodings are Optuna's) with one
statement per table for a whole batch (on Postgres an `unnest` INSERT of fixed shape, elsewhere an
executemany), inside the caller's transaction: the trials become
part of the study atomically with our own bookkeeping, which is what makes "exactly once"
hold without a two-phase dance.

It is used only where `supported` says the storage's schema is the one this code was checked
against (Optuna 5, schema at head; a test compares its rows with `create_new_trial`'s);
elsewhere the broker falls back to `create_new_trial`. Like Optuna, it numbers trials under
the study's row lock.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial
from sqlalchemy import Table, TextClause, func, insert, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

__all__ = ["bulk_create_trials", "supported"]

_CHECKED_MAJOR = 5


# Per storage object: the check reads Optuna's migration scripts (tens of milliseconds), and a
# running server's schema does not change under it.
_SUPPORTED: weakref.WeakKeyDictionary[optuna.storages.BaseStorage, bool] = (
    weakref.WeakKeyDictionary()
)


def supported(storage: optuna.storages.BaseStorage) -> bool:
    """Whether `bulk_create_trials` may write into this storage's tables."""
    known = _SUPPORTED.get(storage)
    if known is None:
        known = _SUPPORTED[storage] = _check(storage)
    return known


def _check(storage: optuna.storages.BaseStorage) -> bool:
    if not isinstance(storage, optuna.storages.RDBStorage):
        return False
    if int(optuna.__version__.split(".")[0]) != _CHECKED_MAJOR:
        return False
    try:
        return storage.get_current_version() == storage.get_head_version()
    except Exception:  # an unreadable version table: let Optuna's own path decide
        return False


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    # Optuna stores naive UTC (models.TrialModel); FrozenTrial datetimes are naive local time.
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def bulk_create_trials(
    session: Session, study_id: int, templates: Sequence[FrozenTrial]
) -> list[int]:
    """Add finished trials to a study in the caller's transaction; returns their trial ids."""
    if not templates:
        return []
    trials = models.TrialModel.__table__
    session.execute(
        select(models.StudyModel.__table__.c.study_id)
        .where(models.StudyModel.__table__.c.study_id == study_id)
        .with_for_update()
    ).one()
    first = session.scalar(
        select(func.count()).select_from(trials).where(trials.c.study_id == study_id)
    )
    ids = list(
        session.scalars(
            insert(trials).returning(trials.c.trial_id, sort_by_parameter_order=True),
            [
                {
                    "number": (first or 0) + i,
                    "study_id": study_id,
                    "state": t.state,
                    "datetime_start": _naive_utc(t.datetime_start),
                    "datetime_complete": _naive_utc(t.datetime_complete),
                }
                for i, t in enumerate(templates)
            ],
        )
    )
    params, values, intermediate, user_attrs, system_attrs = [], [], [], [], []
    as_json: dict[BaseDistribution, str] = {}  # a job's trials share their distributions
    for trial_id, t in zip(ids, templates, strict=True):
        for name, value in t.params.items():
            dist = t.distributions[name]
            if dist not in as_json:
                as_json[dist] = distribution_to_json(dist)
            params.append(
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": dist.to_internal_repr(value),
                    "distribution_json": as_json[dist],
                }
            )
        for objective, value in enumerate(t.values or []):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            values.append(
                {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
            )
        for step, value in t.intermediate_values.items():
            stored, ikind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                value
            )
            intermediate.append(
                {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": stored,
                    "intermediate_value_type": ikind,
                }
            )
        for key, value in t.user_attrs.items():
            user_attrs.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
        for key, value in t.system_attrs.items():
            system_attrs.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
    for model, rows in (
        (models.TrialParamModel, params),
        (models.TrialValueModel, values),
        (models.TrialIntermediateValueModel, intermediate),
        (models.TrialUserAttributeModel, user_attrs),
        (models.TrialSystemAttributeModel, system_attrs),
    ):
        if rows:
            _insert(session, model.__table__, rows)
    return ids


def _insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows into one of Optuna's tables. On Postgres as one statement of fixed shape
    whose columns travel as arrays (`unnest`), typed and encoded by Optuna's own column
    definitions: an executemany sends a statement per row (hundreds per completion)."""
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    columns = [table.c[name] for name in rows[0]]
    session.execute(_unnest_insert(table, tuple(c.name for c in columns), dialect), {
        f"c{i}": _encode([r[c.name] for r in rows], c.type.bind_processor(dialect))
        for i, c in enumerate(columns)
    })  # fmt: skip


def _encode(values: list[Any], processor: Callable[[Any], Any] | None) -> list[Any]:
    return values if processor is None else [processor(v) for v in values]


@functools.cache
def _unnest_insert(table: Table, names: tuple[str, ...], dialect: Dialect) -> TextClause:
    types = [table.c[name].type.compile(dialect=dialect) for name in names]
    arrays = ", ".join(f"CAST(:c{i} AS {t}[])" for i, t in enumerate(types))
    quote = dialect.identifier_preparer.quote
    return text(
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"SELECT * FROM unnest({arrays})"
    )
