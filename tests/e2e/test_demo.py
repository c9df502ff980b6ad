"""`acprop-tuner demo`, the README's first command, end to end on SQLite with real processes
(migrate, keys, server, worker, a job, its recommendation)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_the_main_job_and_prints_a_recommendation(tmp_path: Path) -> None:
    env = {**os.environ, "ACPROP_TUNER_DEMO_DIR": str(tmp_path / "demo")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "acprop_tuner",
            "demo",
            "--task",
            "logreg-breast-cancer",
            "--trials",
            "16",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Job finished" in done.stdout
    match = re.search(r"optax\.contrib\.acprop\(learning_rate=([0-9.e+-]+),", done.stdout)
    assert match, done.stdout
    assert 1e-5 <= float(match.group(1)) <= 1.0
    # Adam 1e-3 and Prodigy trained beside the job by the real worker, on its seeds, and
    # the answer compared with them in one line.
    assert re.search(r"baselines \(the same 2 seeds and steps", done.stdout), done.stdout
    assert re.search(r"^    Adam 1e-3 +[0-9.]+ \(seed spread", done.stdout, re.M), done.stdout
    assert re.search(r"^    Prodigy +[0-9.]+ \(seed spread", done.stdout, re.M), done.stdout
    assert "ACProp at the recommendation: " in done.stdout
    assert (tmp_path / "demo" / "acprop-tuner.sqlite").exists()
