"""Ending every live lease of one stopped job at once (service.broker.lease_endings.
end_leases_of_ended_job), as a local run does after it stopped its worker: on SQLite and
Postgres, only for a cancelled or failed job, trials back to waiting, and nothing else
touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from service.broker.lease_endings import end_leases_of_ended_job
from service.db.models import Lease, Trial
from service.db.types import utcnow
from service.settings import Settings
from tests.support.api import Api, result, running_app
from tests.support.databases import make_settings


@pytest.fixture(scope="module")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings: Settings = make_settings(database_url, tmp_path_factory.mktemp("data"))
    with running_app(settings) as application:
        yield application


def _end(app: Any, job_id: str) -> int:
    with app.state.session_factory() as session:
        return end_leases_of_ended_job(session, uuid.UUID(job_id), utcnow())


def _states(app: Any, job_id: str) -> tuple[dict[str, int], list[str | None]]:
    """The job's trials per state, and its leases' end reasons (None: live), in order."""
    with app.state.session_factory() as session:
        job = uuid.UUID(job_id)
        trials = session.scalars(select(Trial.state).where(Trial.job_id == job)).all()
        ends = session.scalars(
            select(Lease.end_reason).join(Trial).where(Trial.job_id == job).order_by(Lease.id)
        ).all()
    counts: dict[str, int] = {}
    for state in trials:
        counts[state] = counts.get(state, 0) + 1
    return counts, list(ends)


def test_a_cancelled_jobs_live_leases_end_at_once_and_its_trials_wait(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4)
    leases = api.lease(3)
    assert len(leases) == 3
    # One trial completes; two are still held when the job is cancelled.
    r = api.post("/leases/complete", {"results": [result(leases[0]["token"])]})
    assert r.status_code == 200, r.text
    assert _end(app, job["id"]) == 0  # a running job: nothing is touched
    assert _states(app, job["id"]) == ({"complete": 1, "running": 2}, ["completed", None, None])

    cancelled = api.client.post(
        f"/api/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {api.user_key}"}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert _end(app, job["id"]) == 2
    assert _states(app, job["id"]) == (
        {"complete": 1, "waiting": 2},
        ["completed", "cancelled", "cancelled"],
    )
    assert _end(app, job["id"]) == 0  # again: nothing more to end
    # The worker's late write is refused as for any ended lease (and changes nothing).
    late = api.post("/leases/complete", {"results": [result(leases[1]["token"])]})
    assert late.status_code == 409, late.text
    assert _states(app, job["id"])[0] == {"complete": 1, "waiting": 2}
