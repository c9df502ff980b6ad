"""What a job takes from its task and leaves in its Optuna study, on SQLite and Postgres:

- a job that names no steps trains its task's own ``default_steps`` (a built-in's, known to
  the API without JAX), and the API shows the resolved value; a custom task, whose code the
  server never imports, must name its steps (422, nothing stored);
- each job's Optuna study carries the job's context as user attributes (job id and name, task
  and options, tenant id), read back here with plain Optuna (``optuna.load_study``).
"""

from __future__ import annotations

import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from optimizer.tasks import default_steps, task_names
from service.settings import Settings
from tests.support.databases import KeyFactory, count_rows, make_settings


@pytest.fixture(scope="module", name="settings")
def settings_fixture(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The example tasks' module is allowed on this server (as an operator would allow theirs).
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        allowed_task_modules="optimizer.tasks.examples",
    )


@pytest.mark.parametrize("task", ["rosenbrock", "logreg-breast-cancer", "mlp-mnist1d"])
def test_a_job_without_steps_trains_its_tasks_default_steps(
    client: TestClient, make_key: KeyFactory, task: str
) -> None:
    key = make_key()
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": task}, "budget": {"n_trials": 4}},
        headers=key.headers,
    )
    assert r.status_code == 201, r.text
    expected = {"rosenbrock": 500, "logreg-breast-cancer": 200, "mlp-mnist1d": 1000}[task]
    assert default_steps(task) == expected
    assert r.json()["budget"]["steps"] == expected
    shown = client.get(f"/api/v1/jobs/{r.json()['id']}", headers=key.headers).json()
    assert shown["budget"]["steps"] == expected  # stored resolved, read back the same
    # Named steps still win.
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": task}, "budget": {"n_trials": 4, "steps": 40}},
        headers=key.headers,
    )
    assert r.status_code == 201 and r.json()["budget"]["steps"] == 40


def test_every_built_in_task_has_a_default_known_without_jax() -> None:
    assert all(isinstance(default_steps(name), int) for name in task_names())
    assert default_steps("optimizer.tasks.examples.quadratic:make_quadratic") is None


def test_report_every_is_checked_against_the_resolved_steps(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    before = count_rows(app)
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": "logreg-breast-cancer"}, "budget": {"report_every": 250}},
        headers=key.headers,
    )
    assert r.status_code == 422, r.text
    assert "report_every must be <= budget.steps" in r.text and "(200)" in r.text
    assert count_rows(app) == before


def test_a_custom_task_without_steps_is_refused_saying_why(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    before = count_rows(app)
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": "optimizer.tasks.examples.quadratic:make_quadratic"}},
        headers=key.headers,
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "budget", "steps"]
    assert "budget.steps is required for the custom task" in problem["msg"]
    assert count_rows(app) == before
    # A module the operator did not allow is refused as such, before its steps are asked for.
    r = client.post("/api/v1/jobs", json={"task": {"name": "os:system"}}, headers=key.headers)
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "task", "name"]
    assert count_rows(app) == before


def test_each_study_carries_its_jobs_context_for_plain_optuna(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    first, second = make_key(), make_key()
    jobs = []
    for key, name, task in (
        (first, "digits-small", {"name": "mlp-digits", "options": {"widths": [16]}}),
        (second, None, {"name": "rosenbrock"}),
    ):
        body = {"task": task, "budget": {"n_trials": 4, "steps": 20}, "warm_start": False}
        if name is not None:
            body["name"] = name
        r = client.post("/api/v1/jobs", json=body, headers=key.headers)
        assert r.status_code == 201, r.text
        jobs.append((key, r.json()))

    url = app.state.settings.database_url_value()
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(url)}
    for key, job in jobs:
        study = optuna.load_study(study_name=job["study_name"], storage=url)
        assert study.user_attrs == {
            "acprop_job_id": job["id"],
            "job_name": job["name"],
            "task": job["task"]["name"],
            "task_options": job["task"]["options"],
            "tenant_id": str(key.tenant_id),
        }
        assert summaries[job["study_name"]].user_attrs == study.user_attrs
    assert jobs[0][1]["name"] == "digits-small" and jobs[1][1]["name"] == "rosenbrock"
