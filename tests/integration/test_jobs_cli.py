"""``acprop-tuner jobs ...`` and ``recommend --server`` as a user runs them: subprocesses
against a real uvicorn server (SQLite: the commands only speak HTTP, so one backend is
enough). The user key comes from the environment and never shows in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.db.models import KeyScope
from tests.support.api import LOCAL_VERSIONS, run_trials, serve
from tests.support.databases import Key, KeyFactory
from tests.support.datasets import npz, tabular

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with serve(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def user(make_key: KeyFactory) -> Key:
    return make_key()


def cli(
    *args: str, token: str | None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["ACPROP_TUNER_TOKEN"] = token
    env.update(extra_env or {})
    r = subprocess.run(
        [sys.executable, "-m", "acprop_tuner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if token is not None:
        assert token not in r.stdout + r.stderr
    return r


def test_submit_show_list_trials_cancel(url: str, user: Key) -> None:
    r = cli("jobs", "submit", "--server", url, "--task", "rosenbrock", "--trials", "12",
            "--steps", "30", "--seeds", "1", "--sampler", "random", "--name", "cli-job",
            token=user.secret)  # fmt: skip
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert r.stdout == job_id + "\n" and uuid.UUID(job_id)  # the id alone, for scripts

    r = cli("jobs", "show", job_id, "--server", url, token=user.secret)
    assert r.returncode == 0, r.stderr
    assert "cli-job" in r.stdout and "queued" in r.stdout
    assert "12 trials x 30 steps x 1 seeds" in r.stdout and "0/12 trials" in r.stdout

    r = cli("jobs", "show", job_id, "--server", url, "--json", token=user.secret)
    shown = json.loads(r.stdout)
    assert shown["id"] == job_id and shown["sampler"] == "random"

    r = cli("jobs", "list", "--server", url, token=user.secret)
    assert r.returncode == 0 and job_id in r.stdout and r.stdout.startswith("id\tname\tstatus")

    r = cli("jobs", "trials", job_id, "--server", url, "--json", token=user.secret)
    trials = json.loads(r.stdout)
    assert trials and all(t["state"] == "waiting" for t in trials)  # the warm-start sweep
    r = cli("jobs", "trials", job_id, "--server", url, "--after", "0", token=user.secret)
    rows = r.stdout.strip().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == [str(t["number"]) for t in trials[1:]]
    assert "learning_rate=" in rows[0]

    r = cli("jobs", "cancel", job_id, "--server", url, token=user.secret)
    assert r.returncode == 0 and f"job {job_id} is cancelled" in r.stdout
    r = cli("jobs", "list", "--server", url, "--status", "cancelled", "--json", token=user.secret)
    assert [j["id"] for j in json.loads(r.stdout)] == [job_id]


def test_errors_say_what_was_wrong(url: str, user: Key) -> None:
    r = cli("jobs", "show", str(uuid.uuid4()), "--server", url, token=user.secret)
    assert r.returncode == 1 and "404 not_found" in r.stderr

    r = cli("jobs", "submit", "--server", url, "--task", "rosenbrock", "--trials", "0",
            token=user.secret)  # fmt: skip
    assert r.returncode == 1 and "422" in r.stderr and "body.budget.n_trials" in r.stderr

    r = cli("jobs", "submit", "--server", url, "--task", "rosenbrock", "--space", "{not json",
            token=user.secret)  # fmt: skip
    assert r.returncode == 2 and "bad JSON" in r.stderr

    r = cli("jobs", "list", "--server", url, token=None)
    assert r.returncode == 2 and "ACPROP_TUNER_TOKEN" in r.stderr

    r = cli("jobs", "list", token=user.secret)
    assert r.returncode == 2 and "--server" in r.stderr

    wrong = "acpt_wrong-key-0123456789"
    r = cli("jobs", "list", "--server", url, token=wrong)
    assert r.returncode == 1 and "401" in r.stderr and "check ACPROP_TUNER_TOKEN" in r.stderr

    # --token works (its help says the environment is better: flags show in `ps`).
    r = cli("jobs", "list", "--server", url, "--token", user.secret, token=None)
    assert r.returncode == 0 and user.secret not in r.stdout + r.stderr
    # The server can come from the environment too.
    r = cli("jobs", "list", token=user.secret, extra_env={"ACPROP_TUNER_SERVER": url})
    assert r.returncode == 0


def test_submit_wait_follows_the_job_and_prints_the_recommendation(
    url: str, user: Key, make_key: KeyFactory
) -> None:
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    # Below the synthetic divergence edge: a recommendation whatever the random draws.
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "eps_root": {"value": 1e-8}}
    finished = threading.Event()

    def work() -> None:
        # Complete the trials as soon as the submission has made them.
        with httpx.Client(base_url=url, timeout=10) as http:
            while not finished.wait(0.05):
                run_trials(http, worker.headers, 1000)  # type: ignore[arg-type]

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        r = cli("jobs", "submit", "--server", url, "--task", "rosenbrock", "--trials", "12",
                "--steps", "20", "--space", json.dumps(space), "--sampler", "random",
                "--wait", "--poll", "0.1", "--timeout", "60", token=user.secret)  # fmt: skip
    finally:
        finished.set()
        thread.join(10)
    assert r.returncode == 0, r.stderr
    job_id, *rest = r.stdout.splitlines()
    assert uuid.UUID(job_id)
    assert "Recommended initial configuration for ACProp (final)" in r.stdout
    assert "trained with jax 0.10.2, jaxlib 0.10.2, optax 0.2.8" in r.stdout
    assert rest[-1].startswith("optax.contrib.acprop(learning_rate=")
    assert "finished  12/12 trials" in r.stderr  # the last progress line

    # recommend --server goes through the same client.
    r = cli("recommend", job_id, "--server", url, token=user.secret)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == rest[-1]
    r = cli("recommend", job_id, "--server", url, "--json", token=user.secret)
    assert json.loads(r.stdout)["job_id"] == job_id


def test_trials_of_two_optax_versions_warn_in_the_api_and_the_cli(
    url: str, user: Key, make_key: KeyFactory
) -> None:
    """Two workers with different optax versions complete the trials of one job: the answer
    lists both version sets with their trial counts and warns, over the API and in
    `acprop-tuner recommend`; `describe` prints one set plainly when they agree."""
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "eps_root": {"value": 1e-8}}
    body = {"task": {"name": "rosenbrock"}, "space": space, "sampler": "random",
            "budget": {"n_trials": 12, "steps": 20, "seeds": 2, "report_every": 5}}  # fmt: skip
    newer = {**LOCAL_VERSIONS, "optax": "0.2.9.dev0"}
    with httpx.Client(base_url=url, timeout=10, headers=user.headers) as http:
        r = http.post("/api/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        first = run_trials(http, worker.headers, 8, worker_id="gpu-a", capacity=4)  # type: ignore[arg-type]
        second = run_trials(http, worker.headers, 100, worker_id="gpu-b", versions=newer)  # type: ignore[arg-type]
        assert len(first) == 8 and len(second) == 4
        rec = http.get(f"/api/v1/jobs/{job_id}/recommendation").json()
    assert rec["versions"] == [{**LOCAL_VERSIONS, "n_trials": 8}, {**newer, "n_trials": 4}]
    [warning] = rec["warnings"]
    assert "optax 0.2.8 (8 trials)" in warning and "optax 0.2.9.dev0 (4 trials)" in warning
    assert "jaxlib" not in warning  # only what differs is named

    r = cli("recommend", job_id, "--server", url, token=user.secret)
    assert r.returncode == 0, r.stderr
    assert "warning: the trials were trained with different versions of optax" in r.stdout
    assert "optax 0.2.9.dev0 (4 trials)" in r.stdout
    assert "trained with jax" not in r.stdout  # no single set to name
    r = cli("recommend", job_id, "--server", url, "--json", token=user.secret)
    assert json.loads(r.stdout)["warnings"] == [warning]


def test_text_from_the_server_is_printed_escaped(url: str, make_key: KeyFactory) -> None:
    """A job name with terminal escape sequences, a carriage return and a bidi override is
    shown escaped by `jobs list` and `jobs show`, never sent raw to the terminal."""
    user = make_key()
    evil = "\x1b[2J\x1b[Hpwned\rok\u202egnp.exe\x07"
    with httpx.Client(base_url=url, headers=user.headers, timeout=10) as http:
        r = http.post("/api/v1/jobs", json={"name": evil, "task": {"name": "rosenbrock"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
    for args in (("jobs", "list"), ("jobs", "show", job_id)):
        r = cli(*args, "--server", url, token=user.secret)
        assert r.returncode == 0, r.stderr
        assert not any(ch in r.stdout for ch in "\x1b\r\x07\u202e"), repr(r.stdout)
        assert "\\x1b[2J\\x1b[Hpwned\\x0dok\\u202egnp.exe\\x07" in r.stdout
    r = cli("jobs", "list", "--server", url, "--json", token=user.secret)
    assert json.loads(r.stdout)[0]["name"] == evil  # JSON keeps the data, escaped by JSON


def test_a_closed_pipe_ends_the_listing_quietly(url: str, make_key: KeyFactory) -> None:
    """`acprop-tuner jobs list | head -1`: the reader leaves after one line; the command exits
    0 without a traceback. The pipe is shrunk to one page so the listing outgrows it."""
    import fcntl

    user = make_key()
    with httpx.Client(base_url=url, headers=user.headers, timeout=10) as http:
        for i in range(24):
            body = {"name": f"{i:03d}-" + "n" * 190, "task": {"name": "rosenbrock"}}
            assert http.post("/api/v1/jobs", json=body).status_code == 201
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env.update(PYTHONPATH=str(ROOT), ACPROP_TUNER_TOKEN=user.secret)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acprop_tuner", "jobs", "list", "--server", url],
        stdout=write_fd,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        first = reader.readline()  # `head -1`, then the pipe closes
    assert first.startswith(b"id\tname\tstatus")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()


def test_datasets_upload_list_show_delete(url: str, user: Key, tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(npz(**tabular()))
    r = cli("datasets", "upload", str(path), "--name", "train", "--server", url, token=user.secret)
    assert r.returncode == 0, r.stderr
    sha = r.stdout.strip()
    assert r.stdout == sha + "\n" and len(sha) == 64  # the sha256 alone, for scripts
    assert "tabular, 3 classes" in r.stderr and "logreg, mlp" in r.stderr

    r = cli("datasets", "list", "--server", url, token=user.secret)
    assert r.returncode == 0 and r.stdout.startswith("sha256\tname") and sha in r.stdout
    r = cli("datasets", "show", sha, "--server", url, token=user.secret)
    assert "x float32[60, 4], y int64[60]" in r.stdout and "held out" in r.stdout
    r = cli("jobs", "submit", "--server", url, "--task", "cnn", "--options",
            json.dumps({"dataset": sha}), token=user.secret)  # fmt: skip
    assert r.returncode == 1 and "needs images data" in r.stderr

    r = cli("datasets", "delete", sha, "--server", url, token=user.secret)
    assert r.returncode == 0 and "deleted" in r.stdout
    r = cli("datasets", "show", sha, "--server", url, token=user.secret)
    assert r.returncode == 1 and "404" in r.stderr
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    r = cli("datasets", "upload", str(bad), "--server", url, token=user.secret)
    assert r.returncode == 1 and "422" in r.stderr and "not an .npz file" in r.stderr
    r = cli("datasets", "upload", str(tmp_path / "missing.npz"), "--server", url, token=user.secret)
    assert r.returncode == 2 and "cannot read" in r.stderr
