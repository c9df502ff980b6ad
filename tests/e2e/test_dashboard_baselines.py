"""The answer in context on the dashboard, in a real headless Chromium (SQLite and Postgres):
each of a job's baselines is a horizontal line on the loss-against-learning-rate chart, and
the recommendation panel says the comparison in one line (issue #18, "Must show"); a job
without baselines shows neither.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from service.db.models import KeyScope
from tests.support.browser import Site, SyntheticWorker, enter_key, open_page, screenshot

BUDGET = {"n_trials": 16, "steps": 20, "seeds": 2, "report_every": 5}
BASELINES = [{"optimizer": "adam", "learning_rate": 1e-3}, {"optimizer": "prodigy"}]


def test_baselines_are_lines_on_the_chart_and_one_line_in_the_panel(
    browser: Any, site: Site
) -> None:
    user, _ = site.key("judy")
    worker_key, _ = site.key("judy", KeyScope.WORKER)
    job = site.submit(user, name="in-context", budget=BUDGET, sampler="random", baselines=BASELINES)
    plain = site.submit(user, name="no-baselines", budget=BUDGET, sampler="random", baselines=[])
    worker = SyntheticWorker(site, worker_key)
    try:
        worker.run(100)  # both jobs' trials, baselines and check
    finally:
        worker.close()
    with site.client(user) as client:
        rec = client.get(f"/api/v1/jobs/{job['id']}/recommendation").json()
        assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "finished"
    assert [b["label"] for b in rec["baselines"]] == ["Adam 1e-3", "Prodigy"]

    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard#/jobs/{job['id']}")
        enter_key(page, user)
        expect(page.locator("#rec-panel .badge")).to_have_text("final")
        scatter = page.locator("#scatter svg")
        lines = scatter.locator("line.baseline-line")
        expect(lines).to_have_count(2)
        expect(scatter.locator(".baseline-label")).to_have_text(["Adam 1e-3", "Prodigy"])
        # Horizontal, across the plot, at each baseline's loss: the lower loss (Prodigy's)
        # is drawn lower on the page than Adam's.
        adam, prodigy = (lines.nth(i) for i in range(2))
        for line in (adam, prodigy):
            assert line.get_attribute("y1") == line.get_attribute("y2")
            assert float(line.get_attribute("x2")) > float(line.get_attribute("x1"))
        assert adam.get_attribute("data-optimizer") == "adam"
        assert float(prodigy.get_attribute("y1")) > float(adam.get_attribute("y1"))
        expect(adam.locator("title")).to_contain_text("Adam 1e-3: validation loss 0.4005")
        expect(adam.locator("title")).to_contain_text("over 2 seeds")
        expect(page.locator(".legend")).to_contain_text("baselines (same seeds)")

        comparison = page.get_by_test_id("rec-comparison")
        expect(comparison).to_have_text(rec["comparison"])
        expect(comparison).to_contain_text("ACProp at the recommendation: ")
        expect(comparison).to_contain_text("lower loss than Adam 1e-3")
        expect(comparison).to_contain_text("than Prodigy")
        screenshot(page, "dashboard-baselines.png")

        page.goto(f"{site.url}/dashboard#/jobs/{plain['id']}")
        expect(page.locator("#job-title")).to_have_text("no-baselines")
        expect(page.locator("#rec-panel .badge")).to_have_text("final")
        expect(page.locator("#scatter svg line.baseline-line")).to_have_count(0)
        expect(page.get_by_test_id("rec-comparison")).to_have_count(0)
        assert probe.failed == []
        assert probe.errors() == []
    finally:
        context.close()
