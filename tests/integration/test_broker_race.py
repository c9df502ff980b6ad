"""Budget exactness under concurrency: 8 workers race on a 200-trial job (issue #4).

Two API servers (two apps, each with its own broker, mirror and in-process locks, as two
replicas would be) serve one Postgres database over real HTTP; 8 worker threads lease with
random capacities and complete at once. Each (trial, attempt) must be handed out exactly
once, trial numbers must be unique and dense, and the job must end with exactly 200 finished
trials, each written once into its Optuna study.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import optuna
import pytest
from sqlalchemy import func, select

from service.app import create_app
from service.broker.study_sink import TRIAL_ID_ATTR
from service.db.models import KeyScope, Lease, Trial
from service.keys import create_key
from tests.support.api import job_body, serve
from tests.support.databases import make_settings

pytestmark = pytest.mark.postgres

N_TRIALS = 200
N_WORKERS = 8


@pytest.fixture(scope="module")
def backend() -> str:
    return "postgres"  # SQLite has one writer; the race is about row locks


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    apps = [
        create_app(make_settings(database_url, tmp_path_factory.mktemp("data"), db_pool_size=8))
        for _ in range(2)
    ]
    with serve(apps[0]) as url_a, serve(apps[1]) as url_b:
        yield [(apps[0], url_a), (apps[1], url_b)]


def test_eight_workers_racing_get_each_trial_attempt_exactly_once(servers: list[Any]) -> None:
    app, url = servers[0]
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    with app.state.session_factory() as session:
        _, user = create_key(session, tenant=tenant, scope=KeyScope.USER)
        _, worker = create_key(session, tenant=tenant, scope=KeyScope.WORKER)
    r = httpx.post(
        f"{url}/api/v1/jobs",
        json=job_body(n_trials=N_TRIALS, steps=10, report_every=5, seeds=1),
        headers={"Authorization": f"Bearer {user}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    handed: list[tuple[int, int, int]] = []  # (trial id, attempt, number) per lease received
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(N_WORKERS)

    def work(i: int) -> None:
        rng = random.Random(i)
        base = servers[i % 2][1]
        headers = {"Authorization": f"Bearer {worker}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            start.wait()
            idle = 0
            while idle < 3:
                r = client.post(
                    "/api/v1/leases", json={"worker_id": f"w{i}", "capacity": rng.randint(1, 16)}
                )
                if r.status_code != 200:
                    with lock:
                        errors.append(f"lease {r.status_code} {r.text}")
                    return
                leases = r.json()["leases"]
                if not leases:
                    idle += 1
                    continue
                idle = 0
                with lock:
                    handed.extend(
                        (le["trial"]["trial_id"], le["trial"]["attempt"], le["trial"]["number"])
                        for le in leases
                    )
                results = [
                    {"token": le["token"], "final_losses": [rng.random()], "pruned": False}
                    for le in leases
                ]
                r = client.post("/api/v1/leases/complete", json={"results": results})
                if r.status_code != 200:
                    with lock:
                        errors.append(f"complete {r.status_code} {r.text}")
                    return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []

    # Each (trial, attempt) was handed out exactly once; numbers are unique and dense.
    pairs = Counter((tid, att) for tid, att, _ in handed)
    assert len(handed) == N_TRIALS and max(pairs.values()) == 1
    assert sorted(num for _, _, num in handed) == list(range(N_TRIALS))

    with app.state.session_factory() as s:
        jid = uuid.UUID(job_id)
        states = Counter(s.scalars(select(Trial.state).where(Trial.job_id == jid)).all())
        assert states == {"complete": N_TRIALS}
        n_leases = s.scalar(
            select(func.count()).select_from(Lease).join(Trial).where(Trial.job_id == jid)
        )
        assert n_leases == N_TRIALS
        optuna_ids = s.scalars(select(Trial.optuna_trial_id).where(Trial.job_id == jid)).all()
        assert None not in optuna_ids and len(set(optuna_ids)) == N_TRIALS
    study = optuna.load_study(
        study_name=f"acprop-job-{job_id}", storage=app.state.studies.storage()
    )
    ours = Counter(t.user_attrs[TRIAL_ID_ATTR] for t in study.get_trials(deepcopy=False))
    assert len(ours) == N_TRIALS and max(ours.values()) == 1
    r = httpx.get(
        f"{url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {user}"}, timeout=30
    )
    assert r.json()["status"] == "finished"
