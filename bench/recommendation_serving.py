"""Serving the recommendation of a 5,000-trial job while workers report into it (issue 19).

A real server process (``acprop-tuner serve`` on Postgres, one BLAS thread as on a shared
2-core machine) and a fleet of four synthetic workers (bench/_synthetic_fleet.py: the real
worker protocol over HTTP, losses from a known model) that lease 50 trials at a time until
the job's 5,000 trials have finished (its last 3 are the confirmation stage's, whose
candidates are fitted in the lease path, in the server's fitting process), while a client
asks for the recommendation back to back
(``GET /api/v1/jobs/{id}/recommendation``, as a dashboard that polls). Measured: the latency
of those requests while the workers report and after the job ended, what they were answered
(the answer on all the trials so far, an older one that says how far it lags, or 409
``computing``), how far behind the served answers were, and how many fits the server ran
(its ``acprop_tuner_recommendation_fits`` counter) and how long each took (its log).

The bench is bounded: the workers stop after ``FLEET_CAP_S`` (the job is then cancelled, so
that it ends) and the client asks for ``AFTER_S`` more after the end, so a fit that takes
longer than that is still running when it stops; the figures say so.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._postgres import fresh_database
from bench._synthetic_fleet import SyntheticFleet
from bench.dashboard import SPACE, _env, _keys

NAME = "recommendation_serving"
TITLE = "Recommendation serving: a 5,000-trial job polled while workers report into it"
N_FINISHED = 5_000
# The whole job: its last 3 trials are the confirmation stage's (service/broker/
# confirmation_stage.py), whose fit runs in the lease path.
N_TRIALS = N_FINISHED
CAPACITY = 50
FLEET_CAP_S = 210.0
AFTER_S = 60.0
TARGET_P95_MS = 50.0
BUDGET = {"n_trials": N_TRIALS, "steps": 20, "seeds": 2, "report_every": 10}
_FIT_LINE = re.compile(r"fitted the (\w+) recommendation of job \S+ on (\d+) trials in ([\d.]+) s")


def _fits(base: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    m = re.search(r"^acprop_tuner_recommendation_fits_total (\S+)$", text, re.MULTILINE)
    return int(float(m.group(1))) if m else 0


class _Poller(threading.Thread):
    """Asks for the recommendation back to back; records each answer by phase."""

    def __init__(self, base: str, user: str, job: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {user}"}, timeout=120
        )
        self.path = f"/api/v1/jobs/{job}/recommendation"
        self.status_path = f"/api/v1/jobs/{job}"
        self.phase = "reporting"
        self.samples: list[dict[str, Any]] = []
        #: The job's status, asked after each recommendation request: a request that does
        #: no recommendation work, the server's own latency under the workers' load.
        self.status_samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            r = self.client.get(self.path)
            ms = (time.perf_counter() - t0) * 1e3
            body = r.json()
            fresh = body.get("freshness") or {}
            self.samples.append(
                {
                    "phase": self.phase,
                    "t": time.monotonic(),
                    "ms": ms,
                    "code": r.status_code,
                    "kind": body.get("error") or ("current" if fresh.get("current") else "lagging"),
                    "status": body.get("status"),
                    "trials_used": fresh.get("trials_used"),
                    "trials_behind": fresh.get("trials_behind"),
                    "age_s": fresh.get("age_s"),
                }
            )
            t0 = time.perf_counter()
            self.client.get(self.status_path).raise_for_status()
            ms = (time.perf_counter() - t0) * 1e3
            self.status_samples.append({"phase": self.phase, "ms": ms})
            time.sleep(0.05)
        self.client.close()


def _percentiles(ms: list[float]) -> dict[str, float | None]:
    if len(ms) < 2:
        return {"p50": None, "p95": None, "p99": None}
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1)}


def _phase(samples: list[dict[str, Any]]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for s in samples:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    behind = [s["trials_behind"] for s in samples if s["trials_behind"] is not None]
    ages = [s["age_s"] for s in samples if s["kind"] == "lagging"]
    return {
        "requests": len(samples),
        **_percentiles([s["ms"] for s in samples]),
        "max_ms": round(max((s["ms"] for s in samples), default=0.0), 1),
        "answers": kinds,
        "max_trials_behind": max(behind, default=None),
        "max_lagging_age_s": max(ages, default=None),
        "final_answers": sum(1 for s in samples if s["status"] == "final"),
    }


def run() -> dict[str, Any]:
    """The served API as shipped (fits in a child process) and, in the same run, the same
    with the fits in a thread of the server process."""
    child = _measure(fit_process=True)
    thread = _measure(fit_process=False)
    child["summary"].update(
        serving_p95_ms_5000_fit_in_thread=thread["summary"]["serving_p95_ms_5000"],
        status_p95_ms_5000_fit_in_thread=thread["summary"]["status_p95_ms_5000"],
    )
    child["fit_in_thread"] = {k: v for k, v in thread.items() if k not in ("title",)}
    return child


def _measure(*, fit_process: bool) -> dict[str, Any]:
    from acprop_tuner.cli.local import ServerProcess
    from service.db.migrate import upgrade

    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="acprop-recserve-") as logs:
        upgrade(url)
        user, worker = _keys(url)
        env = {
            **_env(url),
            "ACPROP_TUNER_QUOTA_TRIALS_PER_JOB": str(N_TRIALS),
            "ACPROP_TUNER_RECOMMENDATION_FIT_PROCESS": "true" if fit_process else "false",
        }
        server = ServerProcess(env, log_dir=Path(logs), ready_path="/healthz")
        with server.start():
            r = httpx.post(
                f"{server.url}/api/v1/jobs",
                headers={"Authorization": f"Bearer {user}"},
                json={"name": "serving", "task": {"name": "rosenbrock"}, "space": SPACE,
                      "budget": BUDGET, "sampler": "random", "seed": 0, "baselines": []},
                timeout=60,
            )  # fmt: skip
            r.raise_for_status()
            job = r.json()["id"]
            poller = _Poller(server.url, user, job)
            fleet = SyntheticFleet(server.url, worker, fail_every=0)
            t0 = time.monotonic()
            poller.start()
            finished, cancelled = 0, False
            while time.monotonic() - t0 < FLEET_CAP_S and finished < N_FINISHED:
                got = fleet.round(min(CAPACITY, N_FINISHED - finished))
                if not got:
                    break
                finished += got
            fleet.close()
            reporting_s = time.monotonic() - t0
            status = httpx.get(
                f"{server.url}/api/v1/jobs/{job}",
                headers={"Authorization": f"Bearer {user}"},
                timeout=60,
            ).json()
            if status["status"] in ("queued", "running"):  # end it (see N_TRIALS)
                httpx.post(
                    f"{server.url}/api/v1/jobs/{job}/cancel",
                    headers={"Authorization": f"Bearer {user}"},
                    timeout=60,
                ).raise_for_status()
                cancelled = True
            poller.phase = "ended"
            ended = time.monotonic()
            time.sleep(AFTER_S)
            poller.stop.set()
            poller.join(timeout=180)
            fits = _fits(server.url)
        log = "".join(p.read_text(errors="replace") for p in sorted(Path(logs).glob("*.log")))
    fit_lines = [(m[0], int(m[1]), float(m[2])) for m in _FIT_LINE.findall(log)]
    reporting = [s for s in poller.samples if s["phase"] == "reporting"]
    after = [s for s in poller.samples if s["phase"] == "ended"]
    first_final = next((s["t"] - ended for s in after if s["status"] == "final"), None)
    during, post = _phase(reporting), _phase(after)
    status_during = _percentiles(
        [s["ms"] for s in poller.status_samples if s["phase"] == "reporting"]
    )
    status_after = _percentiles([s["ms"] for s in poller.status_samples if s["phase"] == "ended"])
    return {
        "summary": {
            "fit_process": fit_process,
            "serving_p95_ms_5000": during["p95"],
            "status_p95_ms_5000": status_during["p95"],
            "serving_p95_ms_after_end": post["p95"],
            "fits": fits,
            "target_p95_ms": TARGET_P95_MS,
            "met": during["p95"] is not None and during["p95"] < TARGET_P95_MS,
        },
        "title": TITLE,
        "workload": {
            "n_trials": N_TRIALS,
            "n_finished_target": N_FINISHED,
            "trials_reported": finished,
            "reporting_s": round(reporting_s, 1),
            "fleet_cap_s": FLEET_CAP_S,
            "cancelled": cancelled,
            "reached_cap": finished < N_FINISHED,
            "after_end_s": AFTER_S,
            "lease_capacity": CAPACITY,
            "workers": 4,
            "database": "postgres",
        },
        "while_reporting": during,
        "after_end": post,
        "job_status_while_reporting": status_during,
        "job_status_after_end": status_after,
        "first_final_after_end_s": None if first_final is None else round(first_final, 1),
        "fits_logged": [{"status": s, "trials": n, "seconds": sec} for s, n, sec in fit_lines],
    }


def markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, w = result["summary"], result["workload"]
    d, a = result["while_reporting"], result["after_end"]
    fits = result["fits_logged"]
    fmt = lambda v: "–" if v is None else f"{v:,.0f} ms"  # noqa: E731
    answers = lambda p: ", ".join(f"{k} {v}" for k, v in sorted(p["answers"].items()))  # noqa: E731
    longest = max(fits, key=lambda f: f["seconds"]) if fits else None
    ended = (
        f"stopped at the {w['fleet_cap_s']:.0f} s cap after {w['trials_reported']:,} trials"
        if w["reached_cap"]
        else f"{w['trials_reported']:,} trials reported in {w['reporting_s']:.0f} s"
    ) + (", then cancelled, so that it ended" if w["cancelled"] else "")
    final = result["first_final_after_end_s"]
    lines = [
        f"## {result['title']}",
        "",
        f"A real server process on {w['database'].capitalize()}; {w['workers']} synthetic "
        f"workers lease {w['lease_capacity']} trials at a time into a job of "
        f"{w['n_trials']:,} trials ({ended}; its last 3 are the confirmation stage's, whose "
        "candidates are fitted in the lease path, in the server's fitting process) while a "
        "client asks for the recommendation every "
        f"50 ms, then {w['after_end_s']:.0f} s more after the job ended. Requests never fit: "
        "the server fits in the background, once per change of the finished trials (one "
        "fit per job at a time, changes meanwhile coalesced), and serves the last answer with "
        "how far it lags. `acprop-tuner serve` reads the job's trials and fits them in a "
        "child process (service/recommendation_fitter.py), off the server's interpreter lock; "
        "the same server with its reads and fits in a thread is measured after it, in the same "
        "run.",
        "",
        "| | while workers report | after the job ended | target |",
        "|---|---:|---:|---:|",
        f"| requests | {d['requests']} | {a['requests']} | |",
        f"| p50 | {fmt(d['p50'])} | {fmt(a['p50'])} | |",
        f"| p95 | **{fmt(d['p95'])}** | {fmt(a['p95'])} | < {s['target_p95_ms']:.0f} ms |",
        f"| p99 | {fmt(d['p99'])} | {fmt(a['p99'])} | |",
        f"| max | {fmt(d['max_ms'])} | {fmt(a['max_ms'])} | |",
        f"| answers | {answers(d)} | {answers(a)} | |",
        f"| most trials behind, served | {d['max_trials_behind']} | {a['max_trials_behind']} | |",
        f"| p95 of the job's status (`GET .../jobs/{{id}}`, no recommendation work), asked "
        f"after each | {fmt(result['job_status_while_reporting']['p95'])} | "
        f"{fmt(result['job_status_after_end']['p95'])} | |",
    ]
    t = result.get("fit_in_thread")
    if t:
        lines += [
            f"| the same server, reading and fitting in a thread: recommendation p95 | "
            f"{fmt(t['while_reporting']['p95'])} | {fmt(t['after_end']['p95'])} | |",
            f"| the same server, reading and fitting in a thread: job status p95 | "
            f"{fmt(t['job_status_while_reporting']['p95'])} | "
            f"{fmt(t['job_status_after_end']['p95'])} | |",
        ]
    lines += [
        "",
        f"Fits run by the server: {s['fits']}"
        + (
            f"; the longest took {longest['seconds']:.1f} s on {longest['trials']:,} trials"
            if longest
            else ""
        )
        + ". The final answer (the fit on all trials) "
        + (
            f"was served {final:.0f} s after the job ended."
            if final is not None
            else f"was not ready within the {w['after_end_s']:.0f} s measured after the end "
            "(its fit was still running; the older answer was served, labelled provisional)."
        )
        + (
            ""
            if s["met"]
            else " The p95 target is missed while the workers report; the job's status, which "
            "does no recommendation work, is measured beside it: where the two are alike, the "
            "time is the server's work for the workers' reports (and other processes on a "
            "shared machine), not the recommendation's."
        ),
        "",
    ]
    return "\n".join(lines)
