"""Bad input gets its documented 4xx, in the one error shape, naming the field, and writes
nothing (row counts of every table, ours and Optuna's studies, are unchanged)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.databases import Key, KeyFactory, count_rows

TASK = {"name": "mlp-digits"}


def _job(**parts: Any) -> bytes:
    return json.dumps({"task": TASK, **parts}).encode()


def _space(name: str, entry: Any) -> bytes:
    return _job(space={name: entry})


def _budget(**budget: Any) -> bytes:
    return _job(budget=budget)


def _chunks(total: int) -> Iterator[bytes]:
    # A generator body goes out chunked, without Content-Length.
    sent = 0
    while sent < total:
        yield b" " * 4096
        sent += 4096


# (case, raw body, content type, expected status, a loc that must be named, or a word of detail)
CASES: list[tuple[str, Any, str, int, list[Any] | None]] = [
    (
        "learning rate 0",
        _space("learning_rate", {"value": 0.0}),
        "json",
        422,
        ["body", "space", "learning_rate"],
    ),
    (
        "learning rate < 0",
        _space("learning_rate", {"low": -1.0, "high": 1.0}),
        "json",
        422,
        ["body", "space", "learning_rate"],
    ),
    (
        "NaN",
        b'{"task": {"name": "mlp-digits"}, "space": {"b1": {"value": NaN}}}',
        "json",
        422,
        ["body", "space", "b1"],
    ),
    (
        "Infinity",
        b'{"task": {"name": "mlp-digits"}, "space": {"learning_rate": {"low": 1e-5, "high": Infinity}}}',
        "json",
        422,
        ["body", "space", "learning_rate"],
    ),
    (
        "-Infinity eps",
        b'{"task": {"name": "mlp-digits"}, "space": {"eps": {"value": -Infinity}}}',
        "json",
        422,
        ["body", "space", "eps"],
    ),
    (
        "huge float",
        b'{"task": {"name": "mlp-digits"}, "space": {"eps": {"value": 1e999}}}',
        "json",
        422,
        ["body", "space", "eps"],
    ),
    ("beta = 1", _space("b1", {"value": 1.0}), "json", 422, ["body", "space", "b1"]),
    (
        "b2 range up to 1",
        _space("b2", {"low": 0.9, "high": 1.0}),
        "json",
        422,
        ["body", "space", "b2"],
    ),
    ("beta < 0", _space("b2", {"value": -0.1}), "json", 422, ["body", "space", "b2"]),
    (
        "eps_root < 0",
        _space("eps_root", {"value": -1e-8}),
        "json",
        422,
        ["body", "space", "eps_root"],
    ),
    (
        "log range from 0",
        _space("eps_root", {"low": 0.0, "high": 1e-6, "log": True}),
        "json",
        422,
        ["body", "space", "eps_root"],
    ),
    (
        "weight decay < 0",
        _space("weight_decay", {"value": -0.1}),
        "json",
        422,
        ["body", "space", "weight_decay"],
    ),
    (
        "low > high",
        _space("learning_rate", {"low": 1e-1, "high": 1e-3, "log": True}),
        "json",
        422,
        ["body", "space", "learning_rate"],
    ),
    (
        "low = high",
        _space("learning_rate", {"low": 1e-3, "high": 1e-3}),
        "json",
        422,
        ["body", "space", "learning_rate"],
    ),
    (
        "value and range",
        _space("b1", {"value": 0.9, "low": 0.8, "high": 0.99}),
        "json",
        422,
        ["body", "space", "b1"],
    ),
    (
        "unknown hyperparameter",
        _space("momentum", {"value": 0.9}),
        "json",
        422,
        ["body", "space", "momentum"],
    ),
    ("n_trials 0", _budget(n_trials=0), "json", 422, ["body", "budget", "n_trials"]),
    ("n_trials 10^9", _budget(n_trials=10**9), "json", 422, ["body", "budget", "n_trials"]),
    ("steps 0", _budget(steps=0), "json", 422, ["body", "budget", "steps"]),
    ("seeds -1", _budget(seeds=-1), "json", 422, ["body", "budget", "seeds"]),
    (
        "report_every > steps",
        _budget(steps=10, report_every=20),
        "json",
        422,
        ["body", "budget", "report_every"],
    ),
    ("n_trials as text", _budget(n_trials="many"), "json", 422, ["body", "budget", "n_trials"]),
    (
        "unknown task",
        _job(task={"name": "imagenet-resnet"}),
        "json",
        422,
        ["body", "task", "name"],
    ),
    (
        "bad task option",
        _job(task={"name": "mlp-digits", "options": {"batch_size": 0}}),
        "json",
        422,
        ["body", "task", "options"],
    ),
    (
        "unknown task option",
        _job(task={"name": "mlp-digits", "options": {"colour": "red"}}),
        "json",
        422,
        ["body", "task", "options"],
    ),
    ("no task", b"{}", "json", 422, ["body", "task"]),
    ("10,000-character name", _job(name="x" * 10_000), "json", 422, ["body", "name"]),
    ("empty name", _job(name=""), "json", 422, ["body", "name"]),
    ("extra top-level field", _job(priority="high"), "json", 422, ["body", "priority"]),
    ("extra budget field", _budget(gpus=8), "json", 422, ["body", "budget", "gpus"]),
    ("unknown sampler", _job(sampler="grid"), "json", 422, ["body", "sampler"]),
    ("unknown pruner", _job(pruner="patient"), "json", 422, ["body", "pruner"]),
    ("non-JSON", b"task=mlp-digits", "json", 422, ["body"]),
    ("truncated JSON", b'{"task": {"name": "mlp-', "json", 422, ["body"]),
    ("JSON array", b"[1, 2, 3]", "json", 422, ["body"]),
    ("form content type", b"task=mlp-digits", "form", 422, ["body"]),
    ("1 MiB body", _job(name="x" * (1 << 20)), "json", 413, None),
    ("1 MiB body, chunked", "chunked", "json", 413, None),
]


@pytest.fixture(scope="module")
def key(make_key: KeyFactory) -> Key:
    return make_key()


@pytest.mark.parametrize(
    ("case", "body", "content_type", "status", "loc"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_and_writes_nothing(
    case: str,
    body: Any,
    content_type: str,
    status: int,
    loc: list[Any] | None,
    client: TestClient,
    app: FastAPI,
    key: Key,
) -> None:
    headers = {
        **key.headers,
        "Content-Type": "application/json"
        if content_type == "json"
        else "application/x-www-form-urlencoded",
    }
    before = count_rows(app)
    content = _chunks(1 << 20) if body == "chunked" else body
    r = client.post("/api/v1/jobs", content=content, headers=headers)
    assert r.status_code == status, r.text
    payload = r.json()
    assert set(payload) == {"error", "detail"}
    if loc is not None:
        locs = [d["loc"] for d in payload["detail"]]
        assert any(found[: len(loc)] == loc for found in locs), locs
    assert count_rows(app) == before


def test_valid_body_after_bad_ones_still_works(client: TestClient, key: Key) -> None:
    r = client.post(
        "/api/v1/jobs", content=_job(), headers={**key.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    "query",
    ["after=-2", "after=abc", "limit=0", "limit=100000", "after=1e3"],
)
def test_bad_trial_queries(query: str, client: TestClient, key: Key) -> None:
    job_id = client.post("/api/v1/jobs", json={"task": TASK}, headers=key.headers).json()["id"]
    r = client.get(f"/api/v1/jobs/{job_id}/trials?{query}", headers=key.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "query"
