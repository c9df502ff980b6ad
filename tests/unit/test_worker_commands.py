"""`acprop-tuner worker` as a process: device pinning before JAX starts, argument errors, and a
token that never appears in its output (even when the server refuses it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_broker import serve_json

REPO = Path(__file__).resolve().parents[2]
SECRET = "wk_do_not_print_me_0123456789"


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("device", "visible", "platforms"), [("gpu:3", "3", "cuda"), ("cpu", None, "cpu")]
)
def test_device_is_pinned_before_jax_starts(
    device: str, visible: str | None, platforms: str
) -> None:
    code = (
        "import os, sys; from worker.commands import pin_device; "
        f"pin_device({device!r}); assert 'jax' not in sys.modules; "
        "print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ['JAX_PLATFORMS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(visible), platforms]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu:0"], "--device must be 'cpu' or 'gpu:N'"),
        (["--capacity", "0"], "--capacity must be >= 1"),
        # No machine has a GPU 99: the worker says so at start-up, not at its first lease.
        (["--device", "gpu:99"], "JAX cannot use that GPU"),
        ([], "a worker key is required"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    env = {"ACPROP_TUNER_WORKER_TOKEN": ""}
    token = ["--token", SECRET] if args else []
    done = run(
        ["-m", "acprop_tuner", "worker", "--server", "http://127.0.0.1:9", *token, *args], env
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert SECRET not in done.stdout + done.stderr


@contextmanager
def refusing_server() -> Iterator[tuple[str, list[str]]]:
    """Answers every call 401, and records the Authorization headers it received."""
    seen: list[str] = []

    def handle(path: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any]:
        seen.append(headers.get("Authorization", ""))
        return 401, {"error": "unauthorized", "detail": "invalid key"}

    with serve_json(handle) as url:
        yield url, seen


def test_a_refused_token_is_sent_as_bearer_and_never_printed() -> None:
    with refusing_server() as (url, seen):
        done = run(
            ["-m", "acprop_tuner", "worker", "--server", url, "--idle-exit", "1"],
            {"ACPROP_TUNER_WORKER_TOKEN": SECRET, "ACPROP_TUNER_WORKER_LOG_LEVEL": "DEBUG"},
        )
    assert done.returncode == 1  # a 401 is not retried: the worker stops and says why
    assert "refused this worker" in done.stderr
    assert seen == [f"Bearer {SECRET}"]
    assert SECRET not in done.stdout + done.stderr
