"""Exactly once into the Optuna study, whatever dies between our commit and Optuna's.

A completion commits the trial's outcome first; the trial is then an outbox entry until it
is written into the job's study. These tests cut the process short at each point (by calling
the steps the broker runs one at a time) and let the reaper's recovery pass finish: the study
must end with exactly one trial per finished trial, and the job must finish. On SQLite and
Postgres, through both writers (the batched one and Optuna's `create_new_trial`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import optuna
import pytest
from sqlalchemy import select

from optimizer.tuning.policy import search_space
from service.broker import completion, optuna_bulk
from service.broker.study_sink import TRIAL_ID_ATTR, _template, write_finished
from service.broker.writes import ResultIn
from service.db.models import Job, Trial, utcnow
from service.settings import Settings
from tests.support.api import Api, running_app
from tests.support.databases import make_settings


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # A reaper that never runs by itself: the test runs its passes.
    return make_settings(database_url, tmp_path_factory.mktemp("data"), reaper_period_s=3600)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Any]:
    with running_app(settings) as application:
        yield application


def _complete_without_writing(app: Any, api: Api, tokens: list[str]) -> list[int]:
    """What `Broker.complete` does up to its first commit: the process then "dies"."""
    with app.state.session_factory() as session:
        _, finished = completion.complete(
            session,
            api.tenant_id,
            [ResultIn(t, [0.5, 0.5], None, None, None, False, 1.0, 0.0) for t in tokens],
            now=utcnow(),
        )
    return finished


def _study_trials(app: Any, job_id: str) -> Counter[int]:
    storage = app.state.studies.storage()
    study = optuna.load_study(study_name=f"acprop-job-{job_id}", storage=storage)
    return Counter(t.user_attrs[TRIAL_ID_ATTR] for t in study.get_trials(deepcopy=False))


def _job_status(app: Any, job_id: str) -> str:
    with app.state.session_factory() as session:
        return session.scalars(select(Job.status).where(Job.id == uuid.UUID(job_id))).one()


@pytest.mark.parametrize("writer", ["bulk", "optuna"])
def test_outbox_entries_are_written_once_by_the_recovery_pass(
    app: Any, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "optuna":
        monkeypatch.setattr(optuna_bulk, "supported", lambda storage: False)
    api = Api(app)
    job_id = api.submit(n_trials=4)["id"]
    tokens = [le["token"] for le in api.lease(4)]
    finished = _complete_without_writing(app, api, tokens[:2])
    assert _study_trials(app, job_id) == Counter()
    storage = app.state.studies.storage()

    if writer == "optuna":
        # The worst moment for Optuna's own writer: one trial is in the study, but the
        # process died before our table learnt its id.
        with app.state.session_factory() as session:
            row = session.execute(
                select(Trial, Job.study_name, Job.spec).join(Job).where(Trial.id == finished[0])
            ).one()
            template = _template(row.Trial, search_space(row.spec), {})
            name = row.study_name
        # (Our transaction is over: on SQLite it would block Optuna's connection.)
        storage.create_new_trial(storage.get_study_id_from_name(name), template)

    # The rest of the job completes normally meanwhile.
    r = api.post(
        "/leases/complete",
        {"results": [{"token": t, "final_losses": [0.1, 0.2]} for t in tokens[2:]]},
    )
    assert r.status_code == 200
    assert _job_status(app, job_id) == "running"  # two finished trials are not in the study

    # The recovery pass (what the reaper runs each period) finishes the outbox.
    with app.state.session_factory() as session:
        written = write_finished(
            session, storage, finished_before=utcnow() + timedelta(seconds=1), recover=True
        )
    assert written == 2
    counts = _study_trials(app, job_id)
    assert len(counts) == 4 and max(counts.values()) == 1
    assert _job_status(app, job_id) == "finished"
    with app.state.session_factory() as session:
        ids = session.scalars(
            select(Trial.optuna_trial_id).where(Trial.job_id == uuid.UUID(job_id))
        ).all()
    assert None not in ids and len(set(ids)) == 4
    # A second pass finds nothing left to do.
    with app.state.session_factory() as session:
        assert write_finished(session, storage, finished_before=utcnow(), recover=True) == 0
