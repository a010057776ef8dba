"""The storefront in headless Chromium (Debian's, driven by Playwright):
search, open a product, add it to the cart, and the recommendations change."""

from __future__ import annotations

import pytest

from shopsense.models.registry import create_model
from shopsense.search.engine import build_index
from tests.serving_helpers import CHROMIUM, free_port, require_chromium, start_server


@pytest.fixture(scope="module")
def storefront(store, store_dir, tmp_path_factory):
    require_chromium()
    root = tmp_path_factory.mktemp("storefront")
    create_model("itemknn").fit(store).save(root / "models" / "v0001")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    port = free_port()
    server = start_server(
        store_dir, root / "models", root / "state.db", port, "--index", str(root / "index")
    )
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def shelf(page) -> list[str]:
    return page.eval_on_selector_all("#recommended li", "els => els.map(e => e.dataset.itemId)")


def test_search_product_cart_changes_the_recommendations(storefront, store):
    from playwright.sync_api import expect, sync_playwright

    word = store.items["title"].iloc[0].split()[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(storefront)
        page.wait_for_selector("#user option:nth-child(2)", state="attached")
        user = page.eval_on_selector("#user option:nth-child(2)", "o => o.value")
        page.select_option("#user", user)
        expect(page.locator("#shelf-title")).to_have_text(f"Recommended for {user}")
        before = shelf(page)
        assert len(before) == 8
        page.fill("#q", word[:4])
        page.wait_for_selector("#suggestions li")
        page.fill("#q", word)
        page.press("#q", "Enter")
        page.wait_for_selector("#results li")
        assert page.locator("#facets input").count() > 1
        page.click("#results li >> nth=0")
        page.wait_for_selector("#similar li")
        expect(page.locator("#product-view")).to_be_visible()
        page.click("#add-to-cart")
        expect(page.locator("#cart-count")).to_have_text("1")
        page.wait_for_function(
            "before => [...document.querySelectorAll('#recommended li')]"
            ".map(e => e.dataset.itemId).join() !== before",
            arg=",".join(before),
        )
        assert shelf(page) != before
        browser.close()
