"""The analytics page in headless Chromium (Debian's, driven by Playwright),
on a served store holding the hand-made log of ``test_analytics``: without a
key it asks for one and shows no figure; a wrong key is refused; with the key
it shows the placements with their intervals, the experiments, the search
tables and the charts, without a console error. A screenshot goes to
``$SHOPSENSE_SCREENSHOTS`` (else a temporary folder)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from shopsense.models.registry import create_model
from shopsense.serving.store import open_store
from tests.serving_helpers import CHROMIUM, free_port, require_chromium, start_server
from tests.test_analytics import KEY, hand_made_log


@pytest.fixture(scope="module")
def served(store, store_dir, tmp_path_factory):
    require_chromium()
    root = tmp_path_factory.mktemp("analytics_page")
    create_model("pop").fit(store).save(root / "models" / "v0001")
    create_model("itemknn").fit(store).save(root / "models" / "v0002")
    impressions = hand_made_log(open_store(str(root / "state.db")))
    (root / "key").write_text(f"{KEY}\n")
    port = free_port()
    server = start_server(store_dir, root / "models", root / "state.db", port,
                          "--api-key-file", str(root / "key"))  # fmt: skip
    yield f"http://127.0.0.1:{port}", impressions
    server.terminate()
    server.wait(timeout=30)


def screenshot_folder() -> Path:
    folder = Path(os.environ.get("SHOPSENSE_SCREENSHOTS") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cells(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))",
    )


def test_the_page_asks_for_the_key_then_shows_the_figures(served):
    from playwright.sync_api import expect, sync_playwright

    url, impressions = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/data" in r.url else None)

        page.goto(f"{url}/admin/analytics")
        expect(page.locator("#key-view")).to_be_visible()
        expect(page.locator("#figures")).to_be_hidden()
        assert asked == []  # no key, no call for the figures
        assert cells(page, "#placements") == [] and cells(page, "#experiments") == []

        page.fill("#key", KEY)
        page.click("#key-form button")
        expect(page.locator("#figures")).to_be_visible()
        expect(page.locator("#key-view")).to_be_hidden()

        placements = cells(page, "#placements")
        rows = {(r[0], r[1]) for r in placements}
        assert {("recommendations", "all"), ("similar", "all"), ("search", "all")} <= rows
        assert {("", "exp · control"), ("", "exp · treatment"), ("", "outside experiments")} <= rows
        recommendations = next(r for r in placements if r[0] == "recommendations")
        recent = time.time() - 7 * 86_400  # the old list is a month old
        shown = [i for i in impressions if i.placement == "recommendations"
                 and (i.user_id or i.session_id) and i.timestamp > recent]  # fmt: skip
        assert recommendations[3] == str(len(shown))
        assert "[" in recommendations[4] and "%" in recommendations[4]  # CTR with its interval

        [experiment] = cells(page, "#experiments")
        assert experiment[:2] == ["exp", "recommendations"] and experiment[5] == "treatment"
        assert "80%: " in experiment[-1] and experiment[-2].startswith("p ")

        top = cells(page, "#top-queries")
        assert [r[0] for r in top] == ["red shoes", "zzz", "blue hat"]
        assert [r[0] for r in cells(page, "#zero-result-queries")] == ["zzz"]
        assert [r[0] for r in cells(page, "#no-click-queries")] == ["blue hat"]
        assert [r[0] for r in cells(page, "#positions")] == ["1", "2", "3"]

        # CTR has a point where a placement had shoppers that day, and a line between two days
        days = {(i.placement, i.timestamp // 86_400) for i in impressions
                if (i.user_id or i.session_id) and i.timestamp > recent}  # fmt: skip
        assert page.locator("#daily-chart circle").count() == len(days)
        assert page.locator("#daily-chart polyline").count() == 1  # recommendations: two days
        assert page.locator("#position-chart polyline").count() == 1
        page.select_option("#metric", "impressions")  # a count every day, 0 included
        assert page.locator("#daily-chart circle").count() == 3 * 14
        assert page.locator("#daily-chart polyline").count() == 3
        page.select_option("#breakdown", "recommendations")
        expect(page.locator("#daily-legend li")).to_have_count(3)  # outside, control, treatment

        path = screenshot_folder() / "analytics.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

        page.reload()  # the key stays for the tab
        expect(page.locator("#figures")).to_be_visible()
        page.click("#forget")
        expect(page.locator("#key-view")).to_be_visible()
        expect(page.locator("#figures")).to_be_hidden()
        assert problems == []

        refused = browser.new_page()
        refused.goto(f"{url}/admin/analytics")
        refused.fill("#key", "not the key")
        refused.click("#key-form button")
        expect(refused.locator("#key-message")).to_contain_text("refused")
        expect(refused.locator("#figures")).to_be_hidden()
        assert cells(refused, "#placements") == []
        browser.close()
