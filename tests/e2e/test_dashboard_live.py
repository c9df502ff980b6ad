"""The dashboard follows a job live in a real headless Chromium (SQLite and Postgres).

A synthetic worker completes trials over the HTTP worker protocol while the page is open;
the page must show them as they finish (counts, points, diverged markers), then the
recommendation with its optax line (and, once the job's default baselines have trained, the
comparison with them), and, once the job has ended, poll without reading a single finished
trial again, nor the recommendation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import expect

from service.db.models import KeyScope
from tests.support.browser import (
    POLL_S,
    Site,
    SyntheticWorker,
    enter_key,
    open_page,
    poll_now,
    screenshot,
)

N_TRIALS = 40
# Chromium logs every 4xx answer to fetch() as a console error; these are the page's
# expected ones (the recommendation's 409 until there is one).
EXPECTED = [r"status of 409"]


def finished_trial_pages(calls: list[tuple[str, str, int]], job_id: str) -> list[str]:
    return [url for _, url, _ in calls if f"/jobs/{job_id}/trials" in url]


def test_job_followed_live_to_its_recommendation(browser: Any, site: Site) -> None:
    user, _ = site.key("alice")
    worker_key, _ = site.key("alice", KeyScope.WORKER)
    job = site.submit(
        user,
        name="digits-lr",
        budget={"n_trials": N_TRIALS, "steps": 20, "seeds": 2, "report_every": 5},
        sampler="random",
    )
    job_id = job["id"]
    context, page, probe = open_page(browser, site)
    worker = SyntheticWorker(site, worker_key)
    try:
        page.goto(f"{site.url}/dashboard")
        enter_key(page, user)
        link = page.locator(f'a[data-job-id="{job_id}"]')
        expect(link).to_contain_text("digits-lr")
        link.click()
        finished = page.locator('[data-count="finished"]')
        expect(finished).to_have_text(f"0 / {N_TRIALS}")
        expect(page.locator('[data-count="waiting"]')).to_have_text("10")  # the sweep
        expect(page.locator("#rec-panel .rec-reason")).to_contain_text("no recommendation")

        # Trials finish while the page is open: it shows them at its next poll.
        scatter = page.locator("#scatter svg")
        done = worker.run(4)  # the sweep's lowest learning rates: nothing diverges
        # (This first update comes from the page's own 2 s poll; later ones are nudged.)
        expect(finished).to_have_text(f"4 / {N_TRIALS}")
        expect(scatter.locator("circle.pt")).to_have_count(done["complete"])
        expect(scatter.locator(".div-mark")).to_have_count(0)

        # Trials in flight show as running, with the step they last reported.
        held = worker.lease(3)
        worker.report(held[:1], step=10)
        poll_now(page)
        expect(page.locator('[data-count="running"]')).to_have_text("3")
        expect(page.locator(".running-now")).to_contain_text(
            f"#{held[0]['trial']['number']} at step 10"
        )
        screenshot(page, "dashboard-running-job.png")
        held_done = worker.complete(held)
        poll_now(page)
        expect(page.locator('[data-count="running"]')).to_have_text("0")
        expect(finished).to_have_text(f"7 / {N_TRIALS}")

        more = worker.run(5)  # the rest of the sweep (3 of it diverge) and 2 sampled trials
        poll_now(page)
        complete = done["complete"] + held_done["complete"] + more["complete"]
        diverged = done["diverged"] + held_done["diverged"] + more["diverged"]
        assert diverged >= 3
        expect(finished).to_have_text(f"12 / {N_TRIALS}")
        expect(page.locator('[data-count="diverged"]')).to_have_text(str(diverged))
        expect(scatter.locator("circle.pt")).to_have_count(complete)
        expect(scatter.locator(".div-mark")).to_have_count(diverged)
        # A diverged marker says at which step, in its tooltip (made when the pointer is on it).
        scatter.locator(".div-mark").first.hover()
        expect(scatter.locator(".div-mark title").first).to_contain_text("diverged at step 3")

        # Enough evidence: the recommendation, drawn on the plot, with its optax line.
        optax = page.locator("#optax-line")
        expect(optax).to_contain_text("optax.contrib.acprop(learning_rate=")
        expect(page.locator("#rec-panel .badge")).to_have_text("provisional")
        # The panel may first show the answer from an earlier poll: wait for the one from
        # all 12 finished trials before copying (it can differ from 9 trials' answer).
        expect(page.locator("#rec-panel .rec-facts")).to_contain_text("of 12 trials")
        expect(scatter.locator(".rec-lr")).to_have_count(1)
        expect(scatter.locator(".rec-interval")).to_have_count(1)
        expect(scatter.locator(".rec-edge")).to_have_count(1)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
        page.get_by_role("button", name="Copy the optax line").click()
        expect(page.locator("#rec-panel .copied")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == optax.inner_text()

        # The rest of the job; the page ends on the final recommendation.
        worker.run(N_TRIALS)
        poll_now(page)
        expect(finished).to_have_text(f"{N_TRIALS} / {N_TRIALS}")
        expect(page.locator(".job-heading .badge")).to_have_text("finished")
        expect(page.locator("#rec-panel .badge")).to_have_text("final")
        # The job's default baselines trained after its trials (the worker ran them too): the
        # page ends on the answer that has all of them beside it, as the server gives it.
        with site.client(user) as client:
            final = client.get(f"/api/v1/jobs/{job_id}/recommendation").json()
        assert final["comparison"].startswith("ACProp at the recommendation: ")
        expect(page.get_by_test_id("rec-comparison")).to_have_text(final["comparison"])
        expect(link).to_contain_text(f"{N_TRIALS}/{N_TRIALS} trials")
        expect(scatter.locator("circle.pt, .div-mark")).to_have_count(N_TRIALS)
        screenshot(page, "dashboard-finished-job.png")

        # Incremental polling: once the job has ended, polls read the job (and the list),
        # never a trial page again.
        mark = len(probe.responses)
        page.wait_for_timeout((2 * POLL_S + 0.5) * 1000)  # events arrive while Playwright waits
        calls = probe.api_calls(mark)
        job_polls = [u for _, u, _ in calls if urlparse(u).path == f"/api/v1/jobs/{job_id}"]
        assert len(job_polls) >= 2, calls
        assert finished_trial_pages(calls, job_id) == [], calls
        assert [u for _, u, _ in calls if "/recommendation" in u] == [], calls

        # Over the whole session, a trial was read when new, and again only while it was
        # waiting or running: never after the page had seen it finished.
        seen_finished: set[int] = set()
        for url, trials in probe.trial_pages:
            again = [n for n, _ in trials if n in seen_finished]
            assert again == [], f"{url} read finished trials {again}"
            seen_finished |= {n for n, state in trials if state not in ("waiting", "running")}
        assert seen_finished == set(range(N_TRIALS))

        assert probe.failed == []
        assert probe.errors(*EXPECTED) == []
    finally:
        worker.close()
        context.close()


def test_cancel_button_cancels_the_job(browser: Any, site: Site) -> None:
    user, _ = site.key("carol")
    job = site.submit(user, name="to-cancel", budget={"n_trials": 8, "steps": 10})
    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard#/jobs/{job['id']}")
        enter_key(page, user)
        expect(page.locator(".job-heading .badge")).to_have_text("queued")
        cancel = page.locator("#cancel-job")
        cancel.click()
        expect(cancel).to_have_text("Confirm cancel")
        cancel.press("Enter")  # keyboard works too
        expect(page.locator(".job-heading .badge")).to_have_text("cancelled")
        expect(cancel).to_be_hidden()
        expect(page.locator(f'a[data-job-id="{job["id"]}"] .badge')).to_have_text("cancelled")
        with site.client(user) as client:
            assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "cancelled"
        assert probe.failed == []
        assert probe.errors(*EXPECTED) == []
    finally:
        context.close()


def wait_for_asks(page: Any, asked: list[int], n: int) -> None:
    """Until the page has asked ``n`` times (it asks at its polls; this one is nudged)."""
    for _ in range(100):
        if len(asked) >= n:
            return
        poll_now(page)
        page.wait_for_timeout(200)  # route handlers run while Playwright waits
    raise AssertionError(f"the page asked {len(asked)} times, not {n}")


def test_a_lagging_answer_is_shown_as_such_and_asked_again(browser: Any, site: Site) -> None:
    """The server fits in the background: the page shows an answer on older trials with how
    far it lags, keeps it while the server answers 409 ``computing``, and asks again at the
    next polls (the job unchanged) until the answer is current. (The server's answers are
    the real one, altered in the browser.)"""
    user, _ = site.key("lagging")
    worker_key, _ = site.key("lagging", KeyScope.WORKER)
    job_id = site.submit(
        user, budget={"n_trials": N_TRIALS, "steps": 20, "seeds": 2, "report_every": 5},
        sampler="random",
    )["id"]  # fmt: skip
    worker = SyntheticWorker(site, worker_key)
    try:
        worker.run(12)
        with site.client(user) as client:
            real = client.get(f"/api/v1/jobs/{job_id}/recommendation").json()
        assert real["freshness"]["current"], real
        used = real["freshness"]["trials_used"]
        lagging = {
            **real,
            "freshness": {**real["freshness"], "current": False, "refitting": True,
                          "trials_used": used - 3, "trials_behind": 3},
        }  # fmt: skip
        computing = {"error": "computing", "detail": "being computed; ask again"}
        answers = [(200, lagging), (409, computing), (200, real)]
        asked: list[int] = []

        def answer(route: Any) -> None:
            status, body = answers[min(len(asked), len(answers) - 1)]
            asked.append(status)
            headers = {"Retry-After": "2"} if status == 409 else {}
            route.fulfill(status=status, json=body, headers=headers)

        context, page, _probe = open_page(browser, site)
        try:
            page.route(f"**/api/v1/jobs/{job_id}/recommendation", answer)
            page.goto(f"{site.url}/dashboard#/jobs/{job_id}")
            enter_key(page, user)
            lag = page.get_by_test_id("rec-lag")
            expect(lag).to_contain_text(f"Fitted on {used - 3} finished trials; 3 more")
            expect(lag).to_contain_text("an update is being computed")
            wait_for_asks(page, asked, 2)  # the 409: the lagging answer stays
            expect(lag).to_contain_text(f"Fitted on {used - 3} finished trials")
            expect(page.locator("#optax-line")).to_contain_text("optax.contrib.acprop(")
            wait_for_asks(page, asked, 3)
            expect(lag).to_have_count(0)
            expect(page.locator("#rec-panel .badge")).to_have_text("provisional")
            assert asked[:3] == [200, 409, 200], asked
        finally:
            context.close()
    finally:
        worker.close()
