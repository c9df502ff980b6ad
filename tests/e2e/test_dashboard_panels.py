"""The job view's panels with data, in a real headless Chromium (SQLite and Postgres): the
training curves (best and diverged trials, the divergence step marked, a trial pinned from the
table), parameter importance, the workers, the failed trials, the axis labels that say which
loss, and the trials table sorted, filtered and paged. No console error but the
recommendation's expected 409s.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from service.db.models import KeyScope
from tests.support.browser import FAILURE, Site, SyntheticWorker, enter_key, open_page, screenshot

N_TRIALS = 30
EVERY = 5


def test_panels_render_with_data_and_the_table_sorts_and_pages(browser: Any, site: Site) -> None:
    user, _ = site.key("panels")
    worker_key, _ = site.key("panels", KeyScope.WORKER)
    job = site.submit(
        user,
        name="panels",
        budget={"n_trials": N_TRIALS, "steps": 20, "seeds": 2, "report_every": EVERY},
        sampler="random",
        seed=3,
    )
    gpu0 = SyntheticWorker(site, worker_key, "gpu-0")
    gpu1 = SyntheticWorker(site, worker_key, "gpu-1")
    try:
        done = gpu0.train(N_TRIALS - 6, every=EVERY, fail=lambda n: n in (13, 17))
        # The sampler's last three trials (27 of 30: three confirm the best candidates).
        done1 = gpu1.train(3, every=EVERY, fail=lambda n: False)
        held = gpu1.lease(2)  # two confirmation trials in flight, held by gpu-1
    finally:
        gpu0.close()
        gpu1.close()
    complete = done["complete"] + done1["complete"]
    diverged = done["diverged"] + done1["diverged"]
    assert done["failed"] == 2 and diverged >= 1 and complete >= 5 and len(held) == 2
    with site.client(user) as client:
        p = client.get(f"/api/v1/jobs/{job['id']}").json()["progress"]
    rows_now = p["finished"] + p["running"] + p["waiting"]  # the trials that exist so far
    assert 26 <= rows_now <= N_TRIALS

    context, page, probe = open_page(browser, site)
    try:
        page.goto(f"{site.url}/dashboard#/jobs/{job['id']}")
        enter_key(page, user)
        expect(page.locator('[data-count="finished"]')).to_have_text(f"{N_TRIALS - 3} / {N_TRIALS}")

        # Which loss: the workers sent validation losses, so the final values are those.
        expect(page.locator("#scatter-title")).to_have_text(
            "Final validation loss against learning rate"
        )
        expect(page.locator("#scatter .axis-label").nth(1)).to_contain_text("final validation loss")

        # Curves: the five best complete trials and the diverged ones nearest the edge, with
        # their reports drawn; a diverged trial's step is marked.
        curves = page.locator("#curves svg")
        expect(curves.locator(".curve-best")).to_have_count(5)
        expect(curves.locator(".curve-diverged")).to_have_count(min(diverged, 3))
        expect(curves.locator(".curve-div title").first).to_have_text(
            re.compile(r"diverged at step 12$")
        )
        expect(curves.locator(".axis-label").nth(1)).to_contain_text("training loss")
        best_path = curves.locator(".curve-rank-0 .line-path")
        assert best_path.get_attribute("d").count("L") == 20 // EVERY - 1  # 4 reports, 3 segments

        # Importance: both tuned settings, summing to 100 %.
        rows = page.locator("#importance .imp-row")
        expect(rows).to_have_count(2)
        shares = [
            float(v.rstrip(" %")) for v in page.locator("#importance .imp-value").all_inner_texts()
        ]
        assert abs(sum(shares) - 100) < 1
        assert {r.get_attribute("data-param") for r in rows.all()} == {"learning_rate", "eps_root"}

        # Workers: what each finished, what it holds now, its compile and train seconds.
        gpu0_row = page.locator('#workers tr[data-worker="gpu-0"] td')
        expect(gpu0_row.nth(2)).to_have_text(str(N_TRIALS - 6 - 2))  # finished
        expect(gpu0_row.nth(3)).to_have_text("2")  # failed
        expect(page.locator('#workers tr[data-worker="gpu-1"] td').nth(1)).to_have_text(
            "2"
        )  # holds
        assert float(gpu0_row.nth(4).inner_text()) > 0  # compile seconds

        # Failed trials, grouped by their reason.
        expect(page.locator("#failures")).to_contain_text("Failed trials (2)")
        expect(page.locator("#failures .failure")).to_contain_text(FAILURE)
        expect(page.locator("#failures .failure")).to_contain_text("#13, #17")
        screenshot(page, "dashboard-panels.png")

        # The table: best loss first; sorted by number both ways; paged; filtered.
        table = page.locator("#table-card table")
        numbers = lambda: [int(n) for n in table.locator("tbody td.col-number").all_inner_texts()]  # noqa: E731
        losses = [
            float(v) for v in table.locator("tbody td.col-value").all_inner_texts()[:complete]
        ]
        assert losses == sorted(losses)
        page.locator('button[data-sort="number"]').click()
        expect(page.locator("#trials-page")).to_have_text(f"1–25 of {rows_now} · page 1 of 2")
        assert numbers() == list(range(25))
        page.locator('button[data-sort="number"]').click()
        expect(table.locator("th[aria-sort=descending]")).to_contain_text("#")
        assert numbers() == list(range(rows_now - 1, rows_now - 26, -1))
        page.locator("#trials-next").click()
        expect(page.locator("#trials-page")).to_have_text(
            f"26–{rows_now} of {rows_now} · page 2 of 2"
        )
        assert numbers() == list(range(rows_now - 26, -1, -1))
        expect(page.locator("#trials-next")).to_be_disabled()
        page.locator("#trial-filter").select_option("failed")
        assert sorted(numbers()) == [13, 17]
        expect(table.locator("td.error-cell").first).to_have_text(FAILURE)

        # Pinning a trial from the table adds its curve.
        page.locator("#trial-filter").select_option("complete")
        page.locator('button[data-sort="value"]').click()
        page.locator('button[data-sort="value"]').click()  # worst first: not among the best five
        worst = numbers()[0]
        table.locator(f'tr[data-trial="{worst}"] input[type=checkbox]').check()
        expect(curves.locator(f'[data-series="trial-{worst}"]')).to_have_count(1)
        expect(page.locator("#curves-card")).to_contain_text("with those pinned in the table")

        assert probe.failed == []
        assert probe.errors(r"status of 409") == []
    finally:
        context.close()
