"""The dashboard page itself, in a real headless Chromium (SQLite and Postgres): how it is
served (CSP, caching), the key prompt, tenant isolation, text never rendered as markup, and
the banner while the server cannot be reached.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from service.db.models import KeyScope
from tests.support.browser import Site, enter_key, open_page, poll_now, screenshot


def test_served_with_strict_csp_and_cache_headers(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        root = client.get("/")
        assert root.status_code == 307 and root.headers["location"] == "dashboard"
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "require-trusted-types-for 'script'" in csp
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["x-content-type-options"] == "nosniff"
        again = client.get("/dashboard", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        # No inline script or style, and no other origin, in the page.
        html = page.text
        assert "<style" not in html and " style=" not in html
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all(" src=" in attrs and not body.strip() for attrs, body in scripts)
        assert "http://" not in html and "https://" not in html
        assets = re.findall(r'(?:href|src)="(dashboard/static/[^"]+)"', html)
        preloads = re.findall(r'<link rel="modulepreload" href="(dashboard/static/[^"]+)"', html)
        # The icon, the styles, app.js, and a preload for every other module it imports.
        assert len(assets) == 3 + len(preloads) and len(preloads) >= 10
        assert all(p.endswith(".js") and not p.endswith("/app.js") for p in preloads)
        for path in assets:
            asset = client.get(f"/{path}")
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        module = client.get(f"/{assets[2]}")
        assert module.headers["content-type"].startswith("text/javascript")
        # Another release's version still loads, but is not cached under that name.
        stale = client.get(re.sub(r"static/[0-9a-f]+/", "static/0123456789ab/", f"/{assets[2]}"))
        assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
        missing = client.get(re.sub(r"[^/]+$", "nope.js", f"/{assets[2]}"))
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_key_prompt_then_jobs_without_errors(browser: Any, site: Site) -> None:
    user, _ = site.key("dave")
    names = ["first-job", '<img src=x id="injected">&amp; second']
    jobs = [site.submit(user, name=name, budget={"n_trials": 6, "steps": 10}) for name in names]
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/")
        expect(page).to_have_url(f"{site.url}/dashboard")
        expect(page.get_by_role("heading", name="Open the dashboard")).to_be_visible()
        expect(page.get_by_label("API key")).to_be_focused()
        page.keyboard.type(user)
        page.keyboard.press("Enter")
        expect(page.locator(".job-link")).to_have_count(2)
        # The key is in this tab's session storage, never in the URL.
        assert user not in page.url
        assert page.evaluate("sessionStorage.getItem('acprop-tuner.key')") == user
        # Server strings are text, never markup.
        second = page.locator(f'a[data-job-id="{jobs[1]["id"]}"] .job-name')
        expect(second).to_have_text(names[1])
        assert page.locator("#injected").count() == 0
        # Keyboard: focus a job's link and open it with Enter.
        page.locator(f'a[data-job-id="{jobs[0]["id"]}"]').focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(f"#/jobs/{jobs[0]['id']}$"))
        expect(page.locator("#job-title")).to_have_text("first-job")
        expect(page.locator('[data-count="waiting"]')).to_have_text("6")  # the sweep
        # A reload keeps the key (same tab) and the selected job. (It may abort one poll's
        # requests in flight: those, and only those, may fail.)
        assert probe.failed == []
        page.reload()
        expect(page.locator("#job-title")).to_have_text("first-job")
        expect(page.locator("#key-prompt")).to_be_hidden()
        page.set_viewport_size({"width": 390, "height": 844})
        expect(page.locator("#rec-panel .rec-reason")).to_be_visible()
        screenshot(page, "dashboard-narrow.png")
        assert len(probe.failed) <= 3 and all("ERR_ABORTED" in f for f in probe.failed)
        assert probe.errors(r"status of 409") == []  # the recommendation's "not yet"
        assert all(status < 400 or "/recommendation" in url for _, url, status in probe.responses)
    finally:
        context.close()


def test_bad_or_revoked_key_shows_the_prompt_with_the_reason(browser: Any, site: Site) -> None:
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard")
        enter_key(page, "acpt_not-a-real-key")
        expect(page.locator("#key-error")).to_contain_text("did not accept this key")
        expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#dashboard")).to_be_hidden()

        worker, _ = site.key("erin", KeyScope.WORKER)
        enter_key(page, worker)
        expect(page.locator("#key-error")).to_contain_text("needs the user scope")

        user, key_id = site.key("erin")
        enter_key(page, user)
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#key-error")).to_have_text("")
        page.get_by_role("button", name="Forget key").click()
        expect(page.get_by_label("API key")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('acprop-tuner.key')") is None
        enter_key(page, user)
        expect(page.locator("#dashboard")).to_be_visible()
        site.revoke(key_id)  # the next poll is refused: back to the prompt, key forgotten
        poll_now(page)
        expect(page.locator("#key-error")).to_contain_text("invalid or revoked API key")
        expect(page.locator("#dashboard")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('acprop-tuner.key')") is None
        assert probe.failed == []
        assert probe.errors(r"status of 401", r"status of 403") == []
    finally:
        context.close()


def test_another_tenants_job_is_not_found(browser: Any, site: Site) -> None:
    mine, _ = site.key("frank")
    theirs, _ = site.key("grace")
    secret = site.submit(theirs, name="grace-secret-job", budget={"n_trials": 6, "steps": 10})
    site.submit(mine, name="frank-job", budget={"n_trials": 6, "steps": 10})
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard#/jobs/{secret['id']}")
        enter_key(page, mine)
        expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
        expect(page.locator("#not-found-text")).to_contain_text(secret["id"])
        expect(page.locator(".job-link")).to_have_count(1)
        expect(page.locator(".job-link")).to_contain_text("frank-job")
        assert "grace-secret-job" not in page.content()
        foreign = [r for r in probe.api_calls() if secret["id"] in r[1]]
        assert foreign and all(status == 404 for _, _, status in foreign), foreign
        assert page.locator("#job-view").is_hidden()
        # A malformed id in the hash is simply not found either.
        page.evaluate("window.location.hash = '#/jobs/%E0%zz'")
        expect(page.locator("#not-found-text")).to_contain_text("%E0%zz")
        page.evaluate("window.location.hash = ''")
        expect(page.locator("#not-found")).to_be_hidden()
        expect(page.locator("#detail-placeholder")).to_be_visible()
        assert probe.errors(r"status of 404") == []
    finally:
        context.close()


def test_a_failed_jobs_reason_is_shown(browser: Any, site: Site) -> None:
    """A worker reports that the job's task cannot run: the page says the job failed and why,
    and that no recommendation will come (rather than "it appears here soon")."""
    user, _ = site.key("ivan")
    worker_key, _ = site.key("ivan", KeyScope.WORKER)
    job = site.submit(user, name="broken-task-job", budget={"n_trials": 4, "steps": 10})
    reason = "TypeError: make_task() got an unexpected keyword argument 'colour'"
    with site.client(worker_key) as worker:
        leases = worker.post("/api/v1/leases", json={"worker_id": "w", "capacity": 4}).json()
        failures = [{"token": le["token"], "error": reason} for le in leases["leases"]]
        assert worker.post("/api/v1/leases/fail", json={"failures": failures}).status_code == 200
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard#/jobs/{job['id']}")
        enter_key(page, user)
        failure = page.get_by_test_id("job-failure")
        expect(failure).to_be_visible()
        expect(failure).to_contain_text(f"This job failed: the task cannot run: {reason}")
        expect(page.locator("#job-view .badge")).to_have_text("failed")
        expect(page.locator("#rec-panel")).to_contain_text("The job has ended without one.")
        assert probe.errors(r"status of 409") == []
        screenshot(page, "dashboard-failed-job.png")
    finally:
        context.close()


def test_api_docs_render_from_local_assets_only(browser: Any, site: Site) -> None:
    """/docs (Swagger UI) and /redoc render in the browser with every request to this
    server: nothing from a CDN, so they work on a machine without internet."""
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/docs")
        expect(page.locator(".swagger-ui .information-container")).to_contain_text("acprop-tuner")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        assert page.locator(".opblock").count() >= 10
        page.goto(f"{site.url}/redoc")
        expect(page.locator("h1").first).to_contain_text("acprop-tuner")
        # Every request the two pages made went to this server (data: URLs are inline, and
        # a blob: URL of this origin is a worker ReDoc made from its own script).
        fetched = [
            url.removeprefix("blob:")
            for _, url, _ in probe.responses
            if not url.startswith("data:")
        ]
        foreign = [url for url in fetched if not url.startswith(f"{site.url}/")]
        assert fetched and not foreign, foreign
        assert not probe.failed, probe.failed
        assert probe.errors() == []
    finally:
        context.close()


def test_network_errors_show_a_banner_and_polling_goes_on(browser: Any, site: Site) -> None:
    user, _ = site.key("heidi")
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard")
        enter_key(page, user)
        expect(page.locator("#jobs-empty")).to_be_visible()
        page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
        poll_now(page)
        banner = page.locator("#banner")
        expect(banner).to_contain_text("Cannot reach the server")
        expect(page.locator("#dashboard")).to_be_visible()  # not blocking: the page stays
        job = site.submit(user, name="after-the-outage", budget={"n_trials": 6, "steps": 10})
        page.unroute("**/api/v1/**")  # no nudge: the page's own retry must bring it back
        expect(banner).to_be_hidden()
        expect(page.locator(f'a[data-job-id="{job["id"]}"]')).to_contain_text("after-the-outage")
        assert probe.failed, "the aborted requests should have been seen as failed"
    finally:
        context.close()


def test_every_dashboard_file_is_package_data() -> None:
    """An installed (non-editable) service must ship every file the page loads."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["*"]
    files = [p.name for p in (root / "service/dashboard/static").iterdir() if p.is_file()]
    assert files
    assert [f for f in files if not any(fnmatch(f, p) for p in patterns)] == []


TRACKER_SCRIPT = """
async () => {
  const src = document.querySelector("script[type=module]").src.replace(/app\\.js$/, "tracker.js");
  const { TrialTracker, ranges } = await import(src);
  const N = 6000;
  const stored = Array.from({ length: N }, (_, n) => ({ number: n, state: n < N - 10 ? "complete" : "running" }));
  const calls = [];
  const api = {
    async trialColumns(id, after, limit) {  // the compact feed's shape (trial_feed.py)
      calls.push([after, limit]);
      const rest = stored.filter((t) => t.number > after);
      const page = rest.slice(0, limit);
      const col = (f) => page.map(f);
      return {
        number: col((t) => t.number), state: col((t) => t.state), source: col(() => "sampler"),
        attempt: col(() => 1), params: { learning_rate: col(() => 1e-3) }, value: col(() => 1),
        on_validation: col(() => true), diverged_at_step: col(() => null), last_step: col(() => null),
        wall_s: col(() => 1), errors: {},
        next_after: rest.length > limit ? page[page.length - 1].number : null,
      };
    },
  };
  const job = (status) => {
    const count = (s) => stored.filter((t) => t.state === s).length;
    return { status, progress: { finished: count("complete"), waiting: 0, running: count("running"),
      complete: count("complete"), pruned: 0, diverged: 0, failed: 0 } };
  };
  const tracker = new TrialTracker(api, "job");
  const out = {};
  const poll = async (name, status) => {
    await tracker.refresh(job(status));
    out[name] = calls.splice(0);
  };
  await poll("first", "running");
  await poll("unchanged", "running");
  for (let n = N - 10; n < N - 5; n += 1) stored[n].state = "complete";
  await poll("five_finished", "running");
  for (let n = N - 5; n < N; n += 1) stored[n].state = "complete";
  await poll("all_finished", "finished");
  for (let i = 0; i < 5; i += 1) await poll(`ended_${i}`, "finished");
  out.held = tracker.trials.length;
  out.complete = tracker.trials.filter((t) => t.state === "complete").length;
  out.merged = ranges([1, 2, 3, 10, 11, 50, 51, 52, 100], 2);
  return out;
}
"""


def test_a_six_thousand_trial_job_stays_cheap_to_follow(browser: Any, site: Site) -> None:
    """The trial tracker (tracker.js, in the browser) against a fake 6,000-trial job: the
    first poll pages through all trials, later ones read only the trials still running,
    and a finished job costs no trial read at all."""
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard")
        out = page.evaluate(TRACKER_SCRIPT)
        assert out["first"] == [[-1, 5000], [4999, 5000]]
        assert out["unchanged"] == []
        assert out["five_finished"] == [[5989, 10]]  # the ten that were running
        assert out["all_finished"] == [[5994, 5]]  # the five still running
        assert all(out[f"ended_{i}"] == [] for i in range(5))
        assert out["held"] == out["complete"] == 6000
        assert out["merged"] == [[1, 52], [100, 100]]
        assert probe.errors() == []
    finally:
        context.close()
