"""Leases that are not renewed: fencing at expiry, the reaper's retries, heartbeats (issue #4).

Short leases (1.5 s) and a fast reaper (0.2 s), on SQLite and Postgres.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.settings import Settings
from tests.support.api import Api, db_state, result, running_app
from tests.support.databases import make_settings

TTL_S = 1.5
REAPER_S = 0.2


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        lease_ttl_s=TTL_S,
        reaper_period_s=REAPER_S,
    )


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Any]:
    with running_app(settings) as application:
        yield application


def test_expired_lease_is_fenced_even_before_the_reaper_runs(app: Any) -> None:
    api = Api(app)
    api.submit(n_trials=1)
    (lease,) = api.lease(1)
    time.sleep(TTL_S + 0.05)
    r = api.post("/leases/complete", {"results": [result(lease["token"])]})
    assert r.status_code == 409


# -- the reaper ----------------------------------------------------------------------------


def test_reaper_retries_with_identical_params_then_fails(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=1, max_attempts=3)
    seen = []
    for attempt in (1, 2, 3):
        (lease,) = _lease_within(api, 1, timeout=TTL_S + 5)
        assert lease["trial"]["attempt"] == attempt
        seen.append(lease["trial"]["config"])
        # The worker dies: no heartbeat, no result.
    assert seen[0] == seen[1] == seen[2]
    deadline = time.monotonic() + TTL_S + 5
    while api.job(job["id"])["status"] != "finished":
        assert time.monotonic() < deadline, "the reaper did not fail the trial in time"
        time.sleep(0.05)
    state = db_state(app, job["id"])
    assert [t[2] for t in state["trials"]] == ["failed"]
    assert [le[2] for le in state["leases"]] == ["expired"] * 3
    assert [o[1] for o in state["optuna"]] == ["FAIL"]
    assert api.lease(1) == []


def test_heartbeat_keeps_a_lease_past_its_ttl(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=1)
    (lease,) = api.lease(1)
    for _ in range(4):
        time.sleep(TTL_S / 3)
        r = api.post("/leases/heartbeat", {"tokens": [lease["token"]]})
        assert r.json()["held"] == [lease["token"]]
    r = api.post("/leases/complete", {"results": [result(lease["token"])]})
    assert r.status_code == 200
    assert api.job(job["id"])["status"] == "finished"


def _lease_within(api: Api, capacity: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        leases = api.lease(capacity)
        if leases:
            return leases
        assert time.monotonic() < deadline, "no lease came back in time"
        time.sleep(0.05)
