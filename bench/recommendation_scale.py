"""The recommendation's fit at scale: ``recommend`` on synthetic jobs of 100 to 20,000 trials,
the scalable fit (the loss model on a bounded subset above ``FULL_FIT_MAX_TRIALS`` usable
trials, optimizer/recommendation/_subset.py) against the full fit (every trial) in the same
run, with how far their answers lie apart.

The jobs (``synthetic_job``): learning rate and ``eps_root`` tuned over the service's default
space (log [1e-5, 1] x log [1e-16, 1e-6]), 2 seeds a trial, a 12-point warm-start sweep then
two thirds of the trials around the optimum (as a sampler concentrates them) and a third
uniform. The loss is a known parabola in both logs plus seed noise; the divergence edge moves
with ``eps_root`` (3e-2 above 1e-8, falling to 1e-4 at 1e-16), a seed diverging where its
learning rate lies above the edge (with a little noise on the edge).

Each measurement runs in a child process (a clean heap, BLAS at its default thread count):
the scalable fit as shipped (``recommend`` runs its fit with one BLAS thread,
optimizer/recommendation/_threads.py; the median of ``REPEATS`` calls), the same without
that limit (``recommend.__wrapped__``), and the full fit (``full_fit_max_trials`` above the
job's size, one BLAS thread), once, up to ``FULL_FIT_SIZES`` (at 5,000 trials it did not
finish within 600 s in this bench's first run, 2026-12-07, and held gigabytes meanwhile).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.recommendation import FULL_FIT_MAX_TRIALS, TrialOutcome, recommend

NAME = "recommendation_scale"
TITLE = "The recommendation at scale: the fit's time from 100 to 20,000 trials"
SIZES = (100, 1_000, 5_000, 20_000)
#: The full fit is run up to this size (above it, minutes to hours: see ``FULL_FIT_TIMEOUT_S``).
FULL_FIT_SIZES = (100, 1_000)
FULL_FIT_TIMEOUT_S = 600
REPEATS = 3
LOG_LR = (-5.0, 0.0)
LOG_EPS_ROOT = (-16.0, -6.0)
SEEDS = 2
#: The known optimum of the bench's jobs (log10 learning rate, log10 eps_root): a safe one.
OPTIMUM = (math.log10(3e-3), -9.0)
ROOT = Path(__file__).resolve().parents[1]


def edge_log10(log_eps_root: float) -> float:
    """The true divergence edge (log10 learning rate) at ``log10 eps_root``."""
    return -1.5 - max(0.0, -8.0 - log_eps_root) * 2.5 / 8.0


def true_loss(u: float, e: float, optimum: tuple[float, float] = OPTIMUM) -> float:
    return 1.0 + 0.1 * (u - optimum[0]) ** 2 + 0.005 * (e - optimum[1]) ** 2


def synthetic_job(
    n_trials: int,
    *,
    seed: int = 0,
    optimum: tuple[float, float] = OPTIMUM,
    noise: float = 0.03,
) -> list[TrialOutcome]:
    """A job of ``n_trials`` finished trials (see the module docstring); trial ``k`` is
    number ``k``."""
    rng = np.random.default_rng(seed)
    n_sweep = min(12, n_trials)
    n_rest = n_trials - n_sweep
    n_near = (2 * n_rest) // 3
    u = np.concatenate(
        [
            np.linspace(*LOG_LR, 12)[:n_sweep],
            np.clip(rng.normal(optimum[0], 0.6, n_near), *LOG_LR),
            rng.uniform(*LOG_LR, n_rest - n_near),
        ]
    )
    e = np.concatenate(
        [
            np.full(n_sweep, -8.0),
            np.clip(rng.normal(optimum[1], 2.0, n_near), *LOG_EPS_ROOT),
            rng.uniform(*LOG_EPS_ROOT, n_rest - n_near),
        ]
    )
    out = []
    for k in range(n_trials):
        over = u[k] - edge_log10(float(e[k]))
        diverged = tuple(bool(over + 0.05 * rng.standard_normal() > 0.0) for _ in range(SEEDS))
        losses = tuple(
            None if d else true_loss(float(u[k]), float(e[k]), optimum) + noise * rng.normal()
            for d in diverged
        )
        params = {"learning_rate": float(10.0 ** u[k]), "eps_root": float(10.0 ** e[k])}
        out.append(TrialOutcome(k, params, losses, diverged))
    return out


def measure(n_trials: int, full: bool, repeats: int, limited: bool = True) -> dict[str, Any]:
    """Times ``recommend`` on the ``n_trials`` job (in this process); its answer.
    ``limited`` False: without its one-BLAS-thread limit."""
    job = synthetic_job(n_trials)
    threshold = n_trials if full else FULL_FIT_MAX_TRIALS
    fit = recommend if limited else recommend.__wrapped__  # type: ignore[attr-defined]
    times, rec = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        rec = fit(job, status="final", full_fit_max_trials=threshold)
        times.append(time.perf_counter() - start)
    assert rec is not None
    return {
        "fit_s": float(np.median(times)),
        "fit_s_all": times,
        "learning_rate": rec.learning_rate,
        "eps_root": rec.eps_root,
        "divergence_lr": rec.divergence_lr,
        "bounded_by": rec.bounded_by,
        "n_trials_used": rec.evidence.n_trials_used,
        "n_trials_fitted": rec.evidence.n_trials_fitted,
        "n_trials_diverged": rec.evidence.n_trials_diverged,
    }


def _child(n_trials: int, *, full: bool, one_thread: bool, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    code = (
        "import json, sys; from bench.recommendation_scale import measure; "
        f"print(json.dumps(measure({n_trials}, {full}, {1 if full else REPEATS}, {one_thread})))"
    )
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"not_run": f"stopped after {timeout:.0f} s (the limit for one fit here)"}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - start
    return out


def _log_apart(a: float, b: float) -> float:
    """Decades between two learning rates, as a fraction of the 5-decade range."""
    return abs(math.log10(a) - math.log10(b)) / (LOG_LR[1] - LOG_LR[0])


def run() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    # The scalable fits first (seconds), then the full fits (up to FULL_FIT_TIMEOUT_S each).
    for n in SIZES:
        print(f"  scalable, {n} trials ...", file=sys.stderr, flush=True)
        rows.append(
            {
                "n_trials": n,
                "scalable": _child(n, full=False, one_thread=True, timeout=FULL_FIT_TIMEOUT_S),
                "scalable_default_threads": _child(
                    n, full=False, one_thread=False, timeout=FULL_FIT_TIMEOUT_S
                ),
            }
        )
    for row in rows:
        n = row["n_trials"]
        print(f"  full, {n} trials ...", file=sys.stderr, flush=True)
        if n in FULL_FIT_SIZES:
            row["full"] = _child(n, full=True, one_thread=True, timeout=FULL_FIT_TIMEOUT_S)
        else:
            row["full"] = {
                "not_run": "over 600 s at 5,000 trials in this bench's first run; not tried"
            }
        s, f = row["scalable"], row["full"]
        if "learning_rate" in f and "learning_rate" in s:
            row["agreement"] = {
                "lr_apart_of_range": _log_apart(s["learning_rate"], f["learning_rate"]),
                "eps_root_decades_apart": abs(
                    math.log10(s["eps_root"]) - math.log10(f["eps_root"])
                ),
                "scalable_at_or_below_full_edge": f["divergence_lr"] is None
                or s["learning_rate"] <= f["divergence_lr"],
            }
        if "learning_rate" in s:
            row["scalable_lr_apart_of_range_from_optimum"] = _log_apart(
                s["learning_rate"], 10.0 ** OPTIMUM[0]
            )
    by_n = {r["n_trials"]: r for r in rows}

    def fit_s(n: int, kind: str) -> float | None:
        value = by_n[n][kind].get("fit_s")
        return None if value is None else round(float(value), 3)

    summary = {
        "fit_s_5000": fit_s(5_000, "scalable"),
        "fit_s_20000": fit_s(20_000, "scalable"),
        "fit_s_5000_default_blas_threads": fit_s(5_000, "scalable_default_threads"),
        "fit_s_20000_default_blas_threads": fit_s(20_000, "scalable_default_threads"),
        "full_fit_s_1000": fit_s(1_000, "full"),
        "full_fit_s_5000": fit_s(5_000, "full"),
        "full_fit_max_trials": FULL_FIT_MAX_TRIALS,
        "max_lr_apart_of_range": max(
            (r["agreement"]["lr_apart_of_range"] for r in rows if "agreement" in r), default=None
        ),
        "target_fit_s_5000": 1.0,
    }
    return {"summary": summary, "sizes": rows, "full_fit_timeout_s": FULL_FIT_TIMEOUT_S}


def _s(entry: dict[str, Any]) -> str:
    if "fit_s" not in entry:
        return f"not run: {entry.get('not_run', '?')}"
    return f"{entry['fit_s']:.2f} s"


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"## {TITLE}",
        "",
        "`recommend` on synthetic jobs (learning rate and `eps_root` tuned, 2 seeds a trial, "
        "a divergence edge that moves with `eps_root`, a known optimum at 3e-3; "
        "bench/recommendation_scale.py). Up to "
        f"{s['full_fit_max_trials']} usable trials the loss model is fitted on every trial "
        "(the answer as before); above, on a bounded subset (docs/recommendation.md, "
        '"At scale"). Each cell is one child process; the scalable fit is the median of '
        f"{REPEATS} calls, the full fit one call.",
        "",
        "| trials | usable | fitted on | scalable (as shipped: 1 BLAS thread) | scalable, BLAS unlimited "
        "| full fit, 1 BLAS thread | learning rate: scalable / full | apart (of the range) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in result["sizes"]:
        sc, f = r["scalable"], r["full"]
        lrs = f"{sc.get('learning_rate', '?'):.2g} / " + (
            f"{f['learning_rate']:.2g}" if "learning_rate" in f else "-"
        )
        apart = f"{r['agreement']['lr_apart_of_range']:.3f}" if "agreement" in r else "-"
        lines.append(
            f"| {r['n_trials']:,} | {sc.get('n_trials_used', '?')} | "
            f"{sc.get('n_trials_fitted', '?')} | {_s(sc)} | {_s(r['scalable_default_threads'])} "
            f"| {_s(f)} | {lrs} | {apart} |"
        )
    lines += [
        "",
        f"Fit at 5,000 trials: **{s['fit_s_5000']} s** (target < {s['target_fit_s_5000']} s), "
        f"at 20,000: **{s['fit_s_20000']} s**, with one BLAS thread (as `recommend` runs "
        f"it); without that limit {s['fit_s_5000_default_blas_threads']} s and "
        f"{s['fit_s_20000_default_blas_threads']} s (on a loaded 2-core machine, multi-threaded "
        "BLAS on small matrices mostly waits for its other thread). The full fit: "
        f"{s['full_fit_s_1000']} s at 1,000 trials, "
        + (
            f"{s['full_fit_s_5000']} s at 5,000."
            if s["full_fit_s_5000"] is not None
            else "not finished at 5,000 within the limit."
        ),
        "",
    ]
    return "\n".join(lines)
