"""A worker process that does no training, for protocol tests with many real processes.

`python -m tests.support.light_worker --server URL --capacity K [--losses finite|nan|inf|-inf|mixed]`
leases with the real `WorkerClient`, journals every lease it is granted (the journal of
`worker.journal`, path from `ACPROP_TUNER_WORKER_JOURNAL`), then reports and completes at once.
With `--losses` other than `finite` it sends NaN / Infinity / -Infinity JSON literals in its
reports and completions, as a buggy or hostile worker could (the real worker sends null).
It exits 0 after `--idle-exit` seconds without work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import httpx

from worker.client import RetryPolicy, WorkerClient
from worker.journal import Journal
from worker.protocol import Lease, Result

NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def loss_value(mode: str, rng: random.Random) -> float:
    if mode == "finite":
        return rng.uniform(0.1, 2.0)
    if mode == "mixed":
        return rng.choice([*NON_FINITE.values(), rng.uniform(0.1, 2.0)])
    return NON_FINITE[mode]


def kinds(body: object) -> set[str]:
    """Which non-finite values a body carries ("nan", "inf", "-inf")."""
    if isinstance(body, float) and not math.isfinite(body):
        return {"nan" if math.isnan(body) else ("inf" if body > 0 else "-inf")}
    if isinstance(body, dict):
        return set().union(*(kinds(v) for v in body.values()))
    if isinstance(body, list):
        return set().union(*(kinds(v) for v in body))
    return set()


def send_raw(http: httpx.Client, path: str, body: dict) -> tuple[str, int, list[str]]:
    # json.dumps writes NaN / Infinity / -Infinity literals (allow_nan=True by default);
    # httpx's own json= refuses them.
    response = http.post(
        f"/api/v1/leases{path}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    return path, response.status_code, sorted(kinds(body))


def finish(
    client: WorkerClient,
    http: httpx.Client,
    leases: tuple[Lease, ...],
    mode: str,
    rng: random.Random,
) -> list[int]:
    """Report once and complete every lease; returns the HTTP statuses of raw calls."""
    if mode == "finite":
        results = [
            Result(
                token=lease.token,
                final_losses=tuple(loss_value(mode, rng) for _ in lease.trial.seeds),
                validation_losses=tuple(loss_value(mode, rng) for _ in lease.trial.seeds),
                last_finite_losses=tuple(1.0 for _ in lease.trial.seeds),
                diverged_at_step=tuple(None for _ in lease.trial.seeds),
                pruned=False,
                wall_s=0.0,
                compile_s=0.0,
            )
            for lease in leases
        ]
        client.complete(results)
        return []
    statuses = []
    reports = [
        {
            "token": lease.token,
            "step": lease.trial.report_every,
            "losses": [loss_value(mode, rng) for _ in lease.trial.seeds],
        }
        for lease in leases
    ]
    statuses.append(send_raw(http, "/report", {"reports": reports}))
    results_raw = []
    for lease in leases:
        n = len(lease.trial.seeds)
        losses = [loss_value(mode, rng) for _ in range(n)]
        results_raw.append(
            {
                "token": lease.token,
                "final_losses": losses,
                "validation_losses": [loss_value(mode, rng) for _ in range(n)],
                "last_finite_losses": [loss_value(mode, rng) for _ in range(n)],
                "diverged_at_step": [None] * n,
                "pruned": False,
                "wall_s": 0.0,
                "compile_s": 0.0,
            }
        )
    statuses.append(send_raw(http, "/complete", {"results": results_raw}))
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument(
        "--losses", default="finite", choices=["finite", "nan", "inf", "-inf", "mixed"]
    )
    parser.add_argument("--idle-exit", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    token = os.environ["ACPROP_TUNER_WORKER_TOKEN"]
    worker_id = f"light-{os.getpid()}"
    rng = random.Random(args.seed)
    client = WorkerClient(args.server, token, retry=RetryPolicy(attempts=6, base_s=0.05, max_s=1))
    http = httpx.Client(
        base_url=args.server, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    journal = Journal.from_env(worker_id=worker_id)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < args.idle_exit:
        started = time.monotonic()
        answer = client.lease(worker_id, rng.randint(1, args.capacity))
        journal.write("lease_call", n=len(answer.leases), s=time.monotonic() - started)
        if not answer.leases:
            time.sleep(min(answer.retry_after_s or 0.1, 0.1))
            continue
        idle_since = time.monotonic()
        for lease in answer.leases:
            t = lease.trial
            journal.write(
                "lease",
                trial_id=t.trial_id,
                attempt=t.attempt,
                number=t.number,
                config=dict(t.config),
                job_id=t.job_id,
            )
        started = time.monotonic()
        for path, status, sent in finish(client, http, answer.leases, args.losses, rng):
            journal.write("raw_status", path=path, status=status, kinds=sent)
        journal.write("complete_call", n=len(answer.leases), s=time.monotonic() - started)
        idle_since = time.monotonic()
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
