"""A fleet of synthetic workers for benchmarks that need a large job with real rows: they
speak the real worker protocol over HTTP (lease, report every chunk, complete or fail) with
losses from a known model instead of training, so thousands of trials finish in a minute.

The model (per trial, per seed): the final training loss is a parabola in log learning rate
around 2e-3, raised a little by b1 away from 0.9; trials above a divergence edge (lower when
``eps_root`` is tiny, as with optax's default) diverge at a step that comes earlier the further
above the edge they are; the curve decays from 2.3 to the final loss; the validation loss is 5 %
above the final training loss. A few trials fail, as a task that runs out of memory would.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["FAILURE", "SyntheticFleet"]

FAILURE = "RuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.1GiB"
START_LOSS = 2.3


def _edge(config: dict[str, float]) -> float:
    return 10 ** (-1.3 if config.get("eps_root", 1e-8) >= 1e-10 else -2.6)


def _trial_outcome(
    config: dict[str, float], seeds: Sequence[int], steps: int, rng: random.Random
) -> tuple[list[float], list[int | None]]:
    """Final losses and per-seed divergence steps."""
    lr = config["learning_rate"]
    base = 0.12 + 0.09 * math.log10(lr / 2e-3) ** 2 + 0.6 * (config.get("b1", 0.9) - 0.9) ** 2
    over = math.log10(lr / _edge(config))
    finals: list[float] = []
    diverged: list[int | None] = []
    for _ in seeds:
        finals.append(base * (1 + 0.04 * rng.gauss(0, 1)))
        if over + 0.1 * rng.gauss(0, 1) > 0:
            diverged.append(
                max(1, min(steps, int(steps * math.exp(-4 * max(over, 0)) * rng.random()) + 1))
            )
        else:
            diverged.append(None)
    return finals, diverged


def _curve(final: float, step: int, steps: int) -> float:
    return final + (START_LOSS - final) * math.exp(-5 * step / steps)


class SyntheticFleet:
    """`n_workers` workers of one tenant, taking turns; each round one of them leases up to
    `capacity` trials, reports them every chunk and completes them (or fails a few)."""

    def __init__(
        self, base_url: str, worker_key: str, *, n_workers: int = 4, seed: int = 0,
        fail_every: int = 250,
    ) -> None:  # fmt: skip
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {worker_key}"}, timeout=300
        )
        self.workers = [f"bench-worker-{i}" for i in range(n_workers)]
        self.rng = random.Random(seed)
        self.fail_every = fail_every
        self.rounds = 0
        self.finished = 0

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.client.post(f"/api/v1/leases{path}", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST /leases{path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def round(self, capacity: int) -> int:
        """One worker's round; returns how many trials it finished (0: no work left)."""
        worker = self.workers[self.rounds % len(self.workers)]
        first = self.rounds < len(self.workers)  # a worker's first population compiles
        self.rounds += 1
        leases = self._post("", {"worker_id": worker, "capacity": capacity})["leases"]
        if not leases:
            return 0
        started = time.monotonic()
        trial = leases[0]["trial"]
        steps, every = trial["steps"], trial["report_every"]
        outcomes = {
            le["token"]: _trial_outcome(
                le["trial"]["config"], le["trial"]["seeds"], steps, self.rng
            )
            for le in leases
        }
        failing = {
            le["token"]
            for le in leases
            if self.fail_every and le["trial"]["number"] % self.fail_every == 7
        }
        for step in [*range(every, steps + 1, every), *([steps] if steps % every else [])]:
            reports = []
            for token, (finals, div) in outcomes.items():
                if token in failing or all(d is not None and d <= step for d in div):
                    continue
                losses = [
                    None
                    if d is not None and d <= step
                    else _curve(f, step, steps) * (1 + 0.01 * self.rng.gauss(0, 1))
                    for f, d in zip(finals, div, strict=True)
                ]
                reports.append({"token": token, "step": step, "losses": losses})
            if reports:
                self._post("/report", {"reports": reports})
        # Durations as a worker measures them: since it received the leases (the server
        # refuses more), a first population's compilation a part of it.
        elapsed = time.monotonic() - started
        compile_s = round(0.3 * elapsed, 6) if first else 0.0
        results = []
        for token, (finals, div) in outcomes.items():
            if token in failing:
                continue
            wall = elapsed * (1 - 0.1 * self.rng.random())
            results.append(
                {
                    "token": token,
                    "final_losses": [
                        None if d is not None else f for f, d in zip(finals, div, strict=True)
                    ],
                    "validation_losses": [
                        None if d is not None else 1.05 * f
                        for f, d in zip(finals, div, strict=True)
                    ],
                    "last_finite_losses": [
                        _curve(f, max(0, (d or steps) - 1), steps)
                        for f, d in zip(finals, div, strict=True)
                    ],
                    "diverged_at_step": div,
                    "pruned": False,
                    "wall_s": round(wall, 6),
                    "compile_s": compile_s,
                }
            )
        if results:
            self._post("/complete", {"results": results})
        if failing:
            self._post("/fail", {"failures": [{"token": t, "error": FAILURE} for t in failing]})
        self.finished += len(leases)
        return len(leases)

    def run(self, n: int, capacity: int = 250) -> int:
        """Finish `n` more trials (fewer if the job runs out of work); returns how many."""
        done = 0
        while done < n:
            got = self.round(min(capacity, n - done))
            if not got:
                break
            done += got
        return done
