"""The API driven in process: a tenant's keys and protocol calls (`Api`), job submissions,
the stored state of a job (`db_state`), and a synthetic worker (`run_trials`) that answers
with the losses of a problem whose optimum and divergence edge are known.

Databases come from tests/support/databases.py; a real uvicorn server around an app from
acprop_tuner.cli.local.serve_in_thread (re-exported here as `serve`).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from fastapi.testclient import TestClient
from sqlalchemy import select

from acprop_tuner.cli.local import serve_in_thread as serve
from service.app import create_app
from service.broker.study_sink import TRIAL_ID_ATTR
from service.db.models import KeyScope, Lease, Trial, TrialReport
from service.keys import create_key
from service.settings import Settings

__all__ = [
    "BASELINE_LOSSES",
    "BEST_LR",
    "LOCAL_VERSIONS",
    "Api",
    "baseline_result",
    "db_state",
    "edge",
    "job_body",
    "result",
    "run_trials",
    "running_app",
    "serve",
    "synthetic_losses",
]

DEFAULT_SPEC: dict[str, Any] = {
    "task": {"name": "rosenbrock", "options": {}},
    "space": {
        "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
        "b1": {"low": 0.8, "high": 0.99, "log": False},
        "b2": {"low": 0.9, "high": 0.9999, "log": False},
        "eps": {"value": 1e-16},
        "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
    },
    "budget": {"n_trials": 16, "steps": 100, "seeds": 2, "report_every": 5, "max_attempts": 3},
    "sampler": "tpe",
    "pruner": "none",
    "warm_start": False,
    # The broker's trial protocol alone; baseline runs have their own tests
    # (tests/integration/test_baselines_*.py).
    "baselines": [],
}


@contextmanager
def running_app(settings: Settings) -> Iterator[Any]:
    """The app for ``settings`` with its lifespan running (the broker and its reaper thread),
    driven in process through ``app.state.test_client`` (server errors answered, not raised)."""
    application = create_app(settings)
    with TestClient(application, raise_server_exceptions=False) as client:
        application.state.test_client = client
        yield application


def job_body(**budget: Any) -> dict[str, Any]:
    """A job submission for the jobs API (no warm start, so the sampler makes every trial;
    no baselines, so the job ends with its trials)."""
    spec = {k: v for k, v in DEFAULT_SPEC.items() if k != "budget"}
    return {**spec, "budget": {**DEFAULT_SPEC["budget"], **budget}}


class Api:
    """One tenant's user and worker keys on the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client: TestClient = app.state.test_client
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        with app.state.session_factory() as session:
            _, self.user_key = create_key(session, tenant=tenant, scope=KeyScope.USER)
            worker, self.worker_key = create_key(session, tenant=tenant, scope=KeyScope.WORKER)
            self.tenant_id = worker.tenant_id

    def post(self, path: str, body: Any, *, key: str | None = None) -> Any:
        # Raw JSON so that NaN and Infinity literals reach the server as a worker might send.
        return self.client.post(
            f"/api/v1{path}",
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {key or self.worker_key}",
                "Content-Type": "application/json",
            },
        )

    def submit(self, **budget: Any) -> dict[str, Any]:
        r = self.post("/jobs", job_body(**budget), key=self.user_key)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.user_key}"}
        )
        assert r.status_code == 200, r.text
        return r.json()

    def lease(self, capacity: int) -> list[dict[str, Any]]:
        r = self.post("/leases", {"worker_id": "test-worker", "capacity": capacity})
        assert r.status_code == 200, r.text
        return r.json()["leases"]


def result(token: str, value: float = 0.5, **kw: Any) -> dict[str, Any]:
    return {
        "token": token,
        "final_losses": [value, value],
        "validation_losses": [value, value],
        "last_finite_losses": [value, value],
        "diverged_at_step": [None, None],
        "pruned": False,
        "wall_s": 0.1,
        "compile_s": 0.0,
        **kw,
    }


def db_state(app: Any, job_id: str) -> dict[str, Any]:
    """Everything the broker stores of one job (ours and Optuna's), comparable with ==."""
    with app.state.session_factory() as s:
        trials = s.scalars(select(Trial).where(Trial.job_id == uuid.UUID(job_id))).all()
        ids = [t.id for t in trials]
        reports = s.execute(
            select(TrialReport.trial_id, TrialReport.attempt, TrialReport.step, TrialReport.losses)
            .where(TrialReport.trial_id.in_(ids))
            .order_by(TrialReport.trial_id, TrialReport.step)
        ).all()
        leases = s.execute(
            select(Lease.trial_id, Lease.attempt, Lease.end_reason, Lease.expires_at)
            .where(Lease.trial_id.in_(ids))
            .order_by(Lease.trial_id, Lease.attempt)
        ).all()
        study_name = f"acprop-job-{job_id}"
    storage = app.state.studies.storage()
    frozen = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    return {
        "trials": sorted(
            (t.id, t.number, t.state, t.attempt, t.value, t.diverged_at_step, t.optuna_trial_id)
            for t in trials
        ),
        "reports": [tuple(r) for r in reports],
        "leases": [tuple(le) for le in leases],
        "optuna": sorted(
            (f.user_attrs.get(TRIAL_ID_ATTR), f.state.name, f.value, f.intermediate_values)
            for f in frozen
        ),
    }


# -- a synthetic worker: a known optimum and divergence edge, no training --------------------

BEST_LR = 3e-3  # the loss minimum of the synthetic problem


def edge(eps_root: float) -> float:
    """The divergence edge: far lower with optax's eps_root=1e-16, as ACProp behaves."""
    return 3e-2 if eps_root >= 1e-10 else 2e-3


def synthetic_losses(config: dict[str, float], seeds: list[int]) -> tuple[list[float], bool]:
    lr = config["learning_rate"]
    diverged = lr > edge(config["eps_root"])
    losses = [0.1 + (math.log10(lr) - math.log10(BEST_LR)) ** 2 + 0.001 * s for s in seeds]
    return losses, diverged


LOCAL_VERSIONS = {"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8"}

#: The synthetic worker's loss of each reference optimizer (plus 0.001 per seed number).
BASELINE_LOSSES = {
    "adam": 0.4,
    "adamw": 0.41,
    "prodigy": 0.2,
    "dadapt_adamw": 0.3,
    "schedule_free_adamw": 0.35,
}


def baseline_result(run: dict[str, Any], token: str) -> dict[str, Any]:
    """A synthetic completion of a baseline run: a reference optimizer's fixed loss, or for
    the check (ACProp at the recommendation) the synthetic problem's."""
    if run["optimizer"] == "acprop":
        losses, diverged = synthetic_losses(run["settings"], run["seeds"])
    else:
        losses = [BASELINE_LOSSES[run["optimizer"]] + 0.001 * s for s in run["seeds"]]
        diverged = False
    return {
        "token": token,
        "final_losses": losses,
        "validation_losses": losses,
        "last_finite_losses": losses,
        "diverged_at_step": [3 if diverged else None] * len(losses),
        "pruned": False,
        "wall_s": 0.1,
        "compile_s": 0.0,
    }


def run_trials(
    client: TestClient,
    worker: dict[str, str],
    limit: int,
    *,
    only_last_seed_diverges: bool = False,
    worker_id: str = "synthetic",
    versions: dict[str, str] | None = LOCAL_VERSIONS,
    capacity: int = 8,
) -> list[dict[str, Any]]:
    """Lease, report and complete up to `limit` trials; returns the leased trials. Past the
    edge every seed diverges, or with `only_last_seed_diverges` only the last one does (its
    final loss then null, as a worker sends a non-finite one). Completions carry `versions`
    as a worker's do (None: sent without them, as a worker from before they existed).
    Baseline runs, handed out once no trial is left, are completed with `baseline_result`."""
    done: list[dict[str, Any]] = []
    while len(done) < limit:
        r = client.post(
            "/api/v1/leases",
            json={"worker_id": worker_id, "capacity": min(capacity, limit - len(done))},
            headers=worker,
        )
        assert r.status_code == 200, r.text
        leases, baselines = r.json()["leases"], r.json().get("baselines", [])
        if baselines:
            results = [baseline_result(b["run"], b["token"]) for b in baselines]
            r = client.post("/api/v1/leases/complete", json={"results": results}, headers=worker)
            assert r.status_code == 200, r.text
            continue
        if not leases:
            break
        results = []
        for lease in leases:
            trial = lease["trial"]
            losses, diverged = synthetic_losses(trial["config"], trial["seeds"])
            flags = [diverged] * len(losses)
            final: list[float | None] = list(losses)
            if only_last_seed_diverges:
                flags = [diverged and i == len(losses) - 1 for i in range(len(losses))]
                final = [None if f else v for v, f in zip(losses, flags, strict=True)]
            results.append(
                {
                    "token": lease["token"],
                    "final_losses": final,
                    "validation_losses": final,
                    "last_finite_losses": losses,
                    "diverged_at_step": [3 if f else None for f in flags],
                    "pruned": False,
                    "wall_s": 0.1,
                    "compile_s": 0.0,
                    **({"versions": versions} if versions is not None else {}),
                }
            )
            done.append(trial)
        r = client.post("/api/v1/leases/complete", json={"results": results}, headers=worker)
        assert r.status_code == 200, r.text
    return done
