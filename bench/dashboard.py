"""Dashboard benchmark: a job of 5,000 finished trials (12 reports each) served by a real
server process, measured in headless Chromium, against the dashboard before the compact feed
(the commit before issue #17's dashboard, served by that commit's own server) on a copy of
the same database, in the same run.

- Data: written through the real server's worker API by a fleet of four synthetic workers
  (bench/_synthetic_fleet.py: lease 250, a report every 10 of 120 steps, complete or fail),
  so every row (trials, reports, leases, workers, the Optuna study) is what a real job leaves.
  That takes about half a minute here, so no shortcut into the tables was needed. Postgres.
- First render: from navigation (the key already in the tab's session storage) to the job view
  drawn, read in the page: when the loss-against-learning-rate chart holds a point for every
  finished trial (both dashboards), and the new dashboard's own `acprop:job-drawn` mark (every
  panel drawn: charts, curves, importance, workers, table).
- Update: 20 more trials finish through the worker API, the page is told to poll (its own
  path for a tab shown again), and the time until the chart shows them; for the new dashboard
  also its `acprop:update` measure (from the poll's start to the last panel drawn). Three
  updates; the median.
- Server memory: the API process's resident set after the first render and after the updates,
  and its peak (`VmRSS`, `VmHWM`).
- The recommendation is not part of either render: the old page waits for it inside its poll,
  the new one asks beside it. Its own cost at this size is timed last, on a fresh server.

For iteration, ``BENCH_DASHBOARD_QUICK=1`` skips the dashboard before and the recommendation's
own timing (this dashboard with and without the fit only: about 4 minutes instead of 15-20);
its results leave the "before" figures out and are not for committing.

Both servers run with one BLAS thread (``OPENBLAS_NUM_THREADS=1``): on a shared 2-core
machine, multi-threaded BLAS inside the recommendation's fit (running in the server meanwhile)
spins and starves the browser; the same setting for both.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from acprop_tuner.cli.local import ServerProcess
from bench._postgres import fresh_database, server_url
from bench._synthetic_fleet import SyntheticFleet
from service.db.scratch import scratch_database

NAME = "dashboard"
TITLE = "Dashboard: a 5,000-trial job in Chromium, against the dashboard before the compact feed"
ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "e3c1076781af50af5b3ee238fd4ff3b743a28639"  # before issue #17's dashboard
BASELINE_REVISION = "0006"  # its schema
N_FINISHED = 5_000
N_TRIALS = 5_200  # (stays below the confirmation stage: 3 trials at the very end)
UPDATES = 5
UPDATE_TRIALS = 20
UPDATE_WAIT_S = 60.0
REC_WAIT_S = 420.0
BUDGET = {"n_trials": N_TRIALS, "steps": 120, "seeds": 2, "report_every": 10}
SPACE = {
    "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
    "b1": {"low": 0.8, "high": 0.99, "log": False},
    "b2": {"value": 0.999},
    "eps": {"value": 1e-16},
    "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
    "weight_decay": {"value": 0.0},
}
QUICK = os.environ.get("BENCH_DASHBOARD_QUICK") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# The chart holds a point for every finished trial with a loss or a divergence: now().
_SCATTER_HAS = """(n) => {
  const drawn = document.querySelectorAll('#scatter circle.pt, #scatter .div-mark').length;
  return drawn >= n ? performance.now() : false;
}"""
_MARK = "(name) => { const e = performance.getEntriesByName(name); return e.length ? e : false; }"


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ACPROP_TUNER_DATABASE_URL": url,
        "ACPROP_TUNER_RATE_LIMIT_PER_S": "1000000",
        "ACPROP_TUNER_RATE_LIMIT_BURST": "1000000",
        "ACPROP_TUNER_MAX_BODY_BYTES": str(8 * 1024 * 1024),
        "ACPROP_TUNER_LEASE_TTL_S": "600",
        "ACPROP_TUNER_QUOTA_TRIALS_PER_JOB": str(N_TRIALS),
        "OPENBLAS_NUM_THREADS": "1",
    }


@contextmanager
def _server(url: str, tree: Path) -> Iterator[ServerProcess]:
    """`acprop-tuner serve` of the code in `tree` (this checkout, or the baseline's)."""
    env = _env(url)
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree)
    server = ServerProcess(env, cwd=tree, ready_path="/healthz", quiet=True)
    with server.start():
        yield server


@contextmanager
def _baseline_tree() -> Iterator[Path]:
    """The baseline commit's files (its dashboard and its server), from this repository."""
    with tempfile.TemporaryDirectory(prefix="acprop-dash-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE_COMMIT], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def _keys(url: str) -> tuple[str, str]:
    from service.db.models import KeyScope
    from service.keys import create_key

    engine = create_engine(url)
    try:
        with sessionmaker(engine)() as session:
            _, user = create_key(session, tenant="bench", scope=KeyScope.USER)
            _, worker = create_key(session, tenant="bench", scope=KeyScope.WORKER)
    finally:
        engine.dispose()
    return user, worker


def _memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss_mib": round(fields["VmRSS"], 1), "peak_rss_mib": round(fields["VmHWM"], 1)}


def _progress(base: str, user: str, job: str) -> dict[str, int]:
    r = httpx.get(
        f"{base}/api/v1/jobs/{job}", headers={"Authorization": f"Bearer {user}"}, timeout=120
    )
    r.raise_for_status()
    return dict(r.json()["progress"])


def _measure(chromium: Any, server: ServerProcess, user: str, worker: str, job: str, *, new: bool, ask_recommendation: bool = True) -> dict[str, Any]:  # fmt: skip
    """First render and `UPDATES` live updates of the job's page on `server`. Without
    `ask_recommendation`, the page's recommendation requests are answered by the browser
    (409, as while there is none), so the server never fits it meanwhile."""
    out: dict[str, Any] = {}
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    context.add_init_script(f"sessionStorage.setItem('acprop-tuner.key', {json.dumps(user)})")
    page = context.new_page()
    if not ask_recommendation:
        page.route(
            "**/recommendation",
            lambda route: route.fulfill(
                status=409,
                json={"error": "conflict", "detail": "not asked in this measurement"},
            ),
        )
    errors: list[str] = []
    api: list[tuple[str, int]] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: (
            api.append((r.url, int(r.headers.get("content-length", 0))))
            if "/api/v1/" in r.url
            else None
        ),
    )
    fleet = SyntheticFleet(server.url, worker, seed=7 if new else 8, fail_every=0)
    try:
        p = _progress(server.url, user, job)
        points = p["complete"] + p["pruned"] + p["diverged"]
        load = os.getloadavg()[0]
        page.goto(f"{server.url}/dashboard#/jobs/{job}")
        first = page.wait_for_function(_SCATTER_HAS, arg=points, polling="raf", timeout=120_000)
        out["first_render_chart_ms"] = round(first.json_value(), 1)
        out["first_render_api_requests"] = len(api)
        out["first_render_api_bytes"] = sum(n for _, n in api)
        if new:
            drawn = page.wait_for_function(_MARK, arg="acprop:job-drawn", timeout=120_000)
            out["first_render_ms"] = round(drawn.json_value()[0]["startTime"], 1)
        out["finished_trials"] = p["finished"]
        out["load_average_1m_first_render"] = load
        out["memory_after_first_render"] = _memory_mib(server.proc.pid)  # type: ignore[union-attr]

        external, in_page, timed_out = [], [], 0
        for _ in range(UPDATES):
            page.wait_for_timeout(2_500)  # a poll or two after the last change
            marks = page.evaluate("performance.getEntriesByName('acprop:update').length")
            points += fleet.run(UPDATE_TRIALS)
            t0 = page.evaluate(
                "() => { const t = performance.now();"
                " document.dispatchEvent(new Event('visibilitychange')); return t; }"
            )
            try:
                t1 = page.wait_for_function(
                    _SCATTER_HAS, arg=points, polling="raf", timeout=UPDATE_WAIT_S * 1000
                ).json_value()
            except Exception:  # playwright's TimeoutError: the page did not update in time
                timed_out += 1
                break  # (its poll is stuck: the next updates would wait on the same request)
            external.append(max(0.0, t1 - t0))
            if new:
                page.wait_for_function(
                    f"() => performance.getEntriesByName('acprop:update').length > {marks}",
                    timeout=UPDATE_WAIT_S * 1000,
                )
                entries = page.evaluate(
                    "performance.getEntriesByName('acprop:update').map((e) => e.duration)"
                )
                in_page.append(entries[-1])
        out["update_external_ms"] = [round(v, 1) for v in external]
        out["update_timed_out"] = timed_out
        out["updates_tried"] = len(external) + timed_out
        out["update_wait_s"] = UPDATE_WAIT_S
        if new:
            out["update_ms"] = [round(v, 1) for v in in_page]
        out["memory_after_updates"] = _memory_mib(server.proc.pid)  # type: ignore[union-attr]
        out["console_errors"] = [e for e in errors if "status of 409" not in e][:10]
    finally:
        fleet.close()
        context.close()
    return out


def _time_recommendation(url: str, user: str, job: str) -> dict[str, Any]:
    """The recommendation's own cost at this size: one request to a fresh server."""
    with _server(url, ROOT) as server:
        t0 = time.perf_counter()
        try:
            r = httpx.get(
                f"{server.url}/api/v1/jobs/{job}/recommendation",
                headers={"Authorization": f"Bearer {user}"},
                timeout=REC_WAIT_S,
            )
            return {"status": r.status_code, "seconds": round(time.perf_counter() - t0, 1)}
        except httpx.TimeoutException:
            return {"status": None, "seconds": None, "gave_up_after_s": REC_WAIT_S}


def _browser() -> Any:
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def run() -> dict[str, Any]:
    with fresh_database() as url:
        from service.db.migrate import downgrade, upgrade

        upgrade(url)
        user, worker = _keys(url)
        with _server(url, ROOT) as server:
            r = httpx.post(
                f"{server.url}/api/v1/jobs",
                headers={"Authorization": f"Bearer {user}"},
                json={"name": "five-thousand", "task": {"name": "rosenbrock"}, "space": SPACE,
                      "budget": BUDGET, "sampler": "random", "seed": 0},
                timeout=60,
            )  # fmt: skip
            r.raise_for_status()
            job = r.json()["id"]
            fleet = SyntheticFleet(server.url, worker)
            t0 = time.perf_counter()
            written = fleet.run(N_FINISHED)
            populate_s = time.perf_counter() - t0
            fleet.close()
        template = make_url(url).database
        with (
            scratch_database(server_url(), prefix="acprop_bench_old", template=template) as old,
            scratch_database(server_url(), prefix="acprop_bench_quiet", template=template) as quiet,
        ):
            old_url = old.render_as_string(hide_password=False)
            quiet_url = quiet.render_as_string(hide_password=False)
            downgrade(old_url, BASELINE_REVISION)  # the baseline's schema (no 0007-0009 tables)
            chromium_path = os.environ.get("ACPROP_TUNER_CHROMIUM") or "/usr/bin/chromium"
            with _browser() as pw:
                chromium = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
                try:
                    with _server(url, ROOT) as server:
                        new = _measure(chromium, server, user, worker, job, new=True)
                    with _server(quiet_url, ROOT) as server:
                        unfitted = _measure(
                            chromium, server, user, worker, job, new=True, ask_recommendation=False
                        )
                    before = None
                    if not QUICK:
                        with _baseline_tree() as tree, _server(old_url, tree) as server:
                            before = _measure(chromium, server, user, worker, job, new=False)
                    browser_version = chromium.version
                finally:
                    chromium.close()
        recommendation = {"skipped": True} if QUICK else _time_recommendation(url, user, job)
    median = lambda v: round(statistics.median(v), 1) if v else None  # noqa: E731
    if before is None:  # (quick: no before)
        before = {"first_render_chart_ms": None, "update_external_ms": [], "update_timed_out": None,
                  "memory_after_updates": {"rss_mib": None}, "first_render_api_bytes": None}  # fmt: skip
    summary = {
        "first_render_ms_5000": new["first_render_ms"],
        "update_ms_5000": median(new["update_ms"]),
        "first_render_chart_ms_5000": new["first_render_chart_ms"],
        "before_first_render_chart_ms_5000": before["first_render_chart_ms"],
        "first_render_speedup": (
            round(before["first_render_chart_ms"] / new["first_render_chart_ms"], 1)
            if before["first_render_chart_ms"] else None
        ),
        "update_external_ms_5000": median(new["update_external_ms"]),
        "first_render_ms_5000_no_recommendation_fit": unfitted["first_render_ms"],
        "update_ms_5000_no_recommendation_fit": median(unfitted["update_ms"]),
        "before_update_external_ms_5000": median(before["update_external_ms"]),
        "before_updates_timed_out": before["update_timed_out"],
        "server_rss_mib": new["memory_after_updates"]["rss_mib"],
        "before_server_rss_mib": before["memory_after_updates"]["rss_mib"],
        "api_bytes_first_render": new["first_render_api_bytes"],
        "before_api_bytes_first_render": before["first_render_api_bytes"],
        "targets": {"first_render_ms_5000": 1000, "update_ms_5000": 100},
    }  # fmt: skip
    return {
        "title": TITLE,
        "summary": summary,
        "workload": {
            "finished_trials": N_FINISHED,
            "job_trials": N_TRIALS,
            "reports_per_trial": BUDGET["steps"] // BUDGET["report_every"],
            "seeds": BUDGET["seeds"],
            "tuned": ["learning_rate", "b1", "eps_root"],
            "written_through": "the worker API of a real server (4 synthetic workers, lease 250)",
            "trials_written": written,
            "populate_s": round(populate_s, 1),
            "updates": UPDATES,
            "trials_per_update": UPDATE_TRIALS,
            "database": "postgres",
            "baseline_commit": BASELINE_COMMIT,
            "chromium": browser_version,
            "quick": QUICK,
        },
        "new": new,
        "new_without_recommendation_fit": unfitted,
        "before": before,
        "recommendation_at_this_size": recommendation,
    }


def markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, w, n, b = result["summary"], result["workload"], result["new"], result["before"]
    q = result["new_without_recommendation_fit"]
    if w.get("quick"):  # BENCH_DASHBOARD_QUICK: no before, not for committing
        return (
            f"## {result['title']}\n\nQuick run (BENCH_DASHBOARD_QUICK=1: no before, no "
            f"recommendation timing): first render {s['first_render_ms_5000']:,.0f} ms "
            f"({s['first_render_ms_5000_no_recommendation_fit']:,.0f} ms without the fit), "
            f"one update {s['update_ms_5000']:,.0f} ms "
            f"({s['update_ms_5000_no_recommendation_fit']:,.0f} ms).\n"
        )
    r = result["recommendation_at_this_size"]
    fmt = lambda v, unit="ms": "–" if v is None else f"{v:,.0f} {unit}"  # noqa: E731
    med = lambda v: fmt(statistics.median(v)) if v else "–"  # noqa: E731
    mem = lambda m: f"{m['rss_mib']:.0f} MiB (peak {m['peak_rss_mib']:.0f})"  # noqa: E731
    before_update = (
        f"none within {b['update_wait_s']:.0f} s (its poll waits for the recommendation)"
        if b["update_timed_out"]
        else med(b["update_external_ms"])
    )
    rec = (
        f"{r['seconds']:.0f} s" if r.get("seconds") is not None
        else f"more than {r['gave_up_after_s']:.0f} s (gave up waiting)"
    )  # fmt: skip
    loads = ", ".join(f"{x['load_average_1m_first_render']:.1f}" for x in (n, q, b))
    lines = [
        f"## {result['title']}",
        "",
        f"A job of {w['finished_trials']:,} finished trials ({w['reports_per_trial']} reports "
        f"each, {w['seeds']} seeds, {len(w['tuned'])} tuned settings, some diverged, some "
        f"failed) written through {w['written_through']} in {w['populate_s']:.0f} s, served "
        f"by a real server process on {w['database'].capitalize()}; Chromium {w['chromium']} "
        f"headless. Before: commit `{w['baseline_commit'][:10]}`'s dashboard and server on a "
        "copy of the database. Times are read in the page: from navigation, and for an update "
        f"from the poll it was told to make after {w['trials_per_update']} more trials "
        f"finished (median of {w['updates']}). The page asks for the recommendation after "
        "its first render, and the server fits it for minutes at this size (below), in the "
        "same process: the middle column is the same page with those requests answered by the "
        "browser, so the server's only work is the dashboard's.",
        "",
        "| | this dashboard | same, no recommendation fit meanwhile | before | target |",
        "|---|---:|---:|---:|---:|",
        f"| first render, every panel painted (`acprop:job-drawn`) | "
        f"**{fmt(s['first_render_ms_5000'])}** | {fmt(q['first_render_ms'])} | – | < 1,000 ms |",
        f"| first render, loss chart holds all {n['finished_trials']:,} trials | "
        f"{fmt(n['first_render_chart_ms'])} | {fmt(q['first_render_chart_ms'])} | "
        f"{fmt(b['first_render_chart_ms'])} | |",
        f"| API requests, bytes for the first render | {n['first_render_api_requests']}, "
        f"{n['first_render_api_bytes']:,} | {q['first_render_api_requests']}, "
        f"{q['first_render_api_bytes']:,} | {b['first_render_api_requests']}, "
        f"{b['first_render_api_bytes']:,} | |",
        f"| one live update, every panel painted (`acprop:update`) | "
        f"**{med(n['update_ms'])}** | {med(q['update_ms'])} | – | < 100 ms |",
        f"| one live update, until the chart shows the new trials | "
        f"{med(n['update_external_ms'])} | {med(q['update_external_ms'])} | {before_update} | |",
        f"| server memory after the first render | {mem(n['memory_after_first_render'])} | "
        f"{mem(q['memory_after_first_render'])} | {mem(b['memory_after_first_render'])} | |",
        f"| server memory after the updates | {mem(n['memory_after_updates'])} | "
        f"{mem(q['memory_after_updates'])} | {mem(b['memory_after_updates'])} | |",
        "",
        f"The chart's first render is {s['first_render_speedup']}x faster than before. The "
        f"recommendation at this size: {rec} for one request to a fresh server; the page "
        "before waited for it inside its poll, so it showed no new trial meanwhile, and the "
        "server's memory grows with the fit in both. 1-minute load average at each first "
        f"render: {loads} (2 CPUs). Console errors: {len(n['console_errors'])}, "
        f"{len(q['console_errors'])}, {len(b['console_errors'])}.",
        "",
        "Where the time goes (Chromium traces, CPU profiles and the page's resource timings of "
        "this dashboard on the same machine at load 6-8, issue #17): a first render is the "
        "page and its modules (0.3-0.6 s to DOMContentLoaded under load), the trials feed "
        "(80-150 ms of server time alone at 5,000 trials, 300-470 ms while the job and job-list "
        "requests share the server process), parsing and drawing the points (about 0.2 s), "
        "then the curves and the importance (whose first computation on a fresh server holds "
        "the process for 0.1-0.3 s) and the frame (about 0.1 s). An update is three requests "
        "(the job, the job list, the new trials: 30-200 ms under load; the workers and the "
        "importance are read at most every 6 s while the job runs) and 60-80 ms of script, "
        "style and paint. The recommendation's fit, in the same process, is the difference "
        "between the first two columns: it holds the interpreter for minutes and delays every "
        "request meanwhile, hence the scattered updates in the first column.",
        "",
    ]
    return "\n".join(lines)
