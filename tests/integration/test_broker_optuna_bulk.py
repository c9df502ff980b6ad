"""The batched Optuna writer stores exactly what Optuna's own `create_new_trial` stores.

Both write the same templates (complete, pruned and failed trials, with parameters, values,
intermediate values, user attributes) into two studies of one database; Optuna then reads both
back, and the trials must agree field by field. On SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy.orm import Session

from service.broker import optuna_bulk
from service.db.engine import create_db_engine
from tests.support.databases import make_settings


def _templates() -> list[optuna.trial.FrozenTrial]:
    dists = {
        "learning_rate": FloatDistribution(1e-5, 1.0, log=True),
        "b2": FloatDistribution(0.9, 0.9999),
    }
    start = dt.datetime(2026, 1, 2, 3, 4, 5)
    out = []
    for i, (state, value) in enumerate(
        [(TrialState.COMPLETE, 0.25), (TrialState.PRUNED, None), (TrialState.FAIL, None)] * 2
    ):
        t = create_trial(
            state=state,
            value=value,
            params={"learning_rate": 10 ** -(i % 5 + 1), "b2": 0.95},
            distributions=dists,
            intermediate_values={5: 1.0 / (i + 1), 10: 0.5 / (i + 1), 15: math.inf},
            user_attrs={"acprop_trial_id": i, "final_losses": [0.1, None], "state": "x"},
        )
        t.datetime_start = start
        t.datetime_complete = start + dt.timedelta(seconds=i)
        out.append(t)
    return out


def _view(t: optuna.trial.FrozenTrial) -> tuple:
    return (
        t.number,
        t.state,
        t.values,
        t.params,
        t.distributions,
        t.intermediate_values,
        t.user_attrs,
        t.system_attrs,
        t.datetime_start,
        t.datetime_complete,
    )


def test_bulk_writes_equal_optuna_writes(database_url: str, tmp_path: object) -> None:
    settings = make_settings(database_url, tmp_path)  # type: ignore[arg-type]
    storage = optuna.storages.RDBStorage(database_url)
    assert optuna_bulk.supported(storage)
    ours = optuna.create_study(storage=storage, study_name="bulk")
    theirs = optuna.create_study(storage=storage, study_name="optuna")
    templates = _templates()
    # Two batches, so numbering continues across calls.
    engine = create_db_engine(settings)
    with Session(engine) as session:
        ids = optuna_bulk.bulk_create_trials(session, ours._study_id, templates[:2])
        ids += optuna_bulk.bulk_create_trials(session, ours._study_id, templates[2:])
        session.commit()
    engine.dispose()
    expected = [storage.create_new_trial(theirs._study_id, t) for t in templates]
    got = ours.get_trials(deepcopy=False)
    want = theirs.get_trials(deepcopy=False)
    assert [t._trial_id for t in got] == ids and len(expected) == len(ids)
    assert [_view(t) for t in got] == [_view(t) for t in want]
    assert [t.number for t in got] == list(range(len(templates)))
    storage.engine.dispose()


def test_bulk_is_refused_for_other_storages() -> None:
    assert not optuna_bulk.supported(optuna.storages.InMemoryStorage())


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> object:
    return tmp_path_factory.mktemp("data")
