"""Support for the dashboard's browser tests: headless Chromium driven by Playwright (sync
API) against a real uvicorn server on a fresh database (SQLite and Postgres, from the
integration fixtures), a page probe that records console errors and every request, and a
synthetic worker that completes trials over the HTTP worker protocol without training.

Chromium is Debian's (`apt-get install chromium`; Playwright's own download cannot work
offline). Without it the tests skip, unless ACPROP_TUNER_REQUIRE_BROWSER=1 (as .ci/run
sets), where they fail.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.db.models import KeyScope
from service.keys import create_key, revoke_key
from service.settings import Settings
from tests.support.api import baseline_result, serve, synthetic_losses

REQUIRE_ENV = "ACPROP_TUNER_REQUIRE_BROWSER"
CHROMIUM_ENV = "ACPROP_TUNER_CHROMIUM"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results"
POLL_S = 2.0  # the page polls about this often
FAILURE = "RuntimeError: RESOURCE_EXHAUSTED: out of memory allocating 2.1GiB"


def chromium_path() -> str | None:
    """ACPROP_TUNER_CHROMIUM if set (only that), else Debian's `chromium`."""
    configured = os.environ.get(CHROMIUM_ENV)
    candidates = [configured] if configured else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _no_browser(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"the browser tests are required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (one per test module)."""
    path = chromium_path()
    if path is None:
        _no_browser(
            "Chromium is not installed (scripts/install-chromium.sh or `make browser` installs it)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Site:
    """The served app: its base URL and a way to make keys."""

    url: str
    app: Any

    def key(self, tenant: str, scope: KeyScope = KeyScope.USER) -> tuple[str, Any]:
        """A new key for `tenant`: (secret, key id)."""
        with self.app.state.session_factory() as session:
            key, secret = create_key(session, tenant=tenant, scope=scope)
            return secret, key.id

    def revoke(self, key_id: Any) -> None:
        with self.app.state.session_factory() as session:
            revoke_key(session, key_id)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def submit(self, key: str, **body: Any) -> dict[str, Any]:
        with self.client(key) as client:
            r = client.post("/api/v1/jobs", json={"task": {"name": "rosenbrock"}, **body})
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[Site]:
    """The real API (dashboard included) under uvicorn, on this module's fresh database."""
    app = create_app(settings)
    with serve(app) as url:
        yield Site(url, app)


@dataclass
class Probe:
    """What a page did: console errors, uncaught exceptions, failed requests, responses."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    responses: list[tuple[str, str, int]] = field(default_factory=list)  # method, url, status
    # url, [(trial number, state)]
    trial_pages: list[tuple[str, list[tuple[int, str]]]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on(
            "console",
            lambda m: (
                self.console_errors.append(f"{m.text} @ {m.location.get('url', '')}")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        self.responses.append((response.request.method, response.url, response.status))
        if "/trials/columns?" in response.url and response.status == 200:
            page = response.json()
            self.trial_pages.append(
                (response.url, list(zip(page["number"], page["state"], strict=True)))
            )

    def errors(self, *expected: str) -> list[str]:
        """Console errors and page errors, but for the expected HTTP statuses' own messages
        (Chromium logs every 4xx fetch as "Failed to load resource")."""
        allowed = [re.compile(p) for p in expected]
        unexpected = [
            e
            for e in self.console_errors
            if not (e.startswith("Failed to load resource") and any(p.search(e) for p in allowed))
        ]
        return unexpected + self.page_errors

    def api_calls(self, since: int = 0) -> list[tuple[str, str, int]]:
        return [r for r in self.responses[since:] if "/api/v1/" in r[1]]


def open_page(browser: Any, site: Site) -> tuple[Any, Any, Probe]:
    """A new context and page on the dashboard, probed from the first request."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    probe = Probe()
    probe.attach(page)
    page.set_default_timeout(15_000)
    return context, page, probe


def enter_key(page: Any, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open").click()


def poll_now(page: Any) -> None:
    """Make the page poll at once rather than at its next 2 s tick, through its own path
    for a tab that becomes visible again (the tests then wait less, not differently)."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


class SyntheticWorker:
    """A worker that trains nothing: it leases over HTTP and completes each trial with the
    synthetic losses of tests/integration/test_recommendation_api.py (known optimum and
    divergence edge), so trials finish in milliseconds."""

    def __init__(self, site: Site, worker_key: str, worker_id: str = "synthetic") -> None:
        self.client = site.client(worker_key)
        self.worker_id = worker_id

    def close(self) -> None:
        self.client.close()

    def lease(self, capacity: int) -> list[dict[str, Any]]:
        r = self.client.post(
            "/api/v1/leases", json={"worker_id": self.worker_id, "capacity": capacity}
        )
        assert r.status_code == 200, r.text
        return r.json()["leases"]

    def report(self, leases: list[dict[str, Any]], step: int) -> None:
        """An intermediate report at `step` for each of `leases`."""
        reports = [
            {"token": le["token"], "step": step, "losses": [1.0] * len(le["trial"]["seeds"])}
            for le in leases
        ]
        r = self.client.post("/api/v1/leases/report", json={"reports": reports})
        assert r.status_code == 200, r.text

    def complete(self, leases: list[dict[str, Any]]) -> dict[str, int]:
        """Complete `leases`; returns how many completed and how many diverged."""
        results, diverged = [], 0
        for lease in leases:
            trial = lease["trial"]
            losses, div = synthetic_losses(trial["config"], trial["seeds"])
            diverged += div
            results.append(
                {
                    "token": lease["token"],
                    "final_losses": losses,
                    "validation_losses": losses,
                    "last_finite_losses": losses,
                    "diverged_at_step": [3 if div else None for _ in losses],
                    "pruned": False,
                    "wall_s": 0.1,
                    "compile_s": 0.0,
                }
            )
        if results:
            r = self.client.post("/api/v1/leases/complete", json={"results": results})
            assert r.status_code == 200, r.text
        return {"complete": len(leases) - diverged, "diverged": diverged}

    def train(self, n: int, *, every: int, fail: Callable[[int], bool]) -> dict[str, int]:
        """Lease up to `n` trials and report each every `every` steps of its schedule: the
        loss falls from 2.0 to its final value; a trial past the divergence edge stops
        reporting at step `2 * every` and diverges at `2 * every + 2`. Trials whose number
        `fail` picks fail instead. Returns how many completed, diverged and failed."""
        totals = {"complete": 0, "diverged": 0, "failed": 0}
        while sum(totals.values()) < n:
            leases = self.lease(min(8, n - sum(totals.values())))
            if not leases:
                break
            steps = leases[0]["trial"]["steps"]
            failing = [le for le in leases if fail(le["trial"]["number"])]
            training = [le for le in leases if not fail(le["trial"]["number"])]
            finals = {
                le["token"]: synthetic_losses(le["trial"]["config"], le["trial"]["seeds"])
                for le in training
            }
            edge = 2 * every + 2
            for step in range(every, steps + 1, every):
                reports = [
                    {
                        "token": token,
                        "step": step,
                        "losses": [f + (2.0 - f) * math.exp(-step / every) for f in losses],
                    }
                    for token, (losses, diverged) in finals.items()
                    if not (diverged and step > edge)
                ]
                if reports:
                    r = self.client.post("/api/v1/leases/report", json={"reports": reports})
                    assert r.status_code == 200, r.text
            results = [
                {
                    "token": token,
                    "final_losses": [None if diverged else f for f in losses],
                    "validation_losses": [None if diverged else f for f in losses],
                    "diverged_at_step": [edge if diverged else None for _ in losses],
                    "wall_s": 0.1,
                    "compile_s": 0.05,
                }
                for token, (losses, diverged) in finals.items()
            ]
            if results:
                r = self.client.post("/api/v1/leases/complete", json={"results": results})
                assert r.status_code == 200, r.text
            if failing:
                failures = [{"token": le["token"], "error": FAILURE} for le in failing]
                r = self.client.post("/api/v1/leases/fail", json={"failures": failures})
                assert r.status_code == 200, r.text
            diverged = sum(1 for _, d in finals.values() if d)
            totals["complete"] += len(finals) - diverged
            totals["diverged"] += diverged
            totals["failed"] += len(failing)
        return totals

    def run(self, n: int, capacity: int = 8) -> dict[str, int]:
        """Lease and complete up to `n` trials, and the job's baseline runs once no trial is
        left (with the synthetic losses of tests/support/api.py's `baseline_result`)."""
        totals = {"complete": 0, "diverged": 0}
        while totals["complete"] + totals["diverged"] < n:
            done = totals["complete"] + totals["diverged"]
            r = self.client.post(
                "/api/v1/leases",
                json={"worker_id": self.worker_id, "capacity": min(capacity, n - done)},
            )
            assert r.status_code == 200, r.text
            leases, baselines = r.json()["leases"], r.json()["baselines"]
            if baselines:
                results = [baseline_result(b["run"], b["token"]) for b in baselines]
                r = self.client.post("/api/v1/leases/complete", json={"results": results})
                assert r.status_code == 200, r.text
                continue
            if not leases:
                break
            for k, v in self.complete(leases).items():
                totals[k] += v
        return totals


def screenshot(page: Any, name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
