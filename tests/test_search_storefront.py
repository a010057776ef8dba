"""The storefront's search pages in headless Chromium (Debian's, driven by
Playwright): a query that matches nothing gets a "no results for …" page
with the popular items apart, and a misspelt one a "did you mean" link."""

from __future__ import annotations

from collections import Counter

from tests.serving_helpers import CHROMIUM
from tests.test_storefront import storefront  # noqa: F401 (the served storefront, a fixture)


def test_no_results_page_and_did_you_mean(storefront, store):  # noqa: F811 (the fixture)
    from playwright.sync_api import expect, sync_playwright

    titles = store.items["title"][store.items["title"].str.isascii()]
    noun = Counter(t.split()[-3].lower() for t in titles).most_common(1)[0][0]
    assert len(noun) >= 5
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(storefront)
        page.fill("#q", "xqzv flurb")
        page.press("#q", "Enter")
        expect(page.locator("#no-results")).to_be_visible()
        expect(page.locator("#no-results-title")).to_have_text("No results for “xqzv flurb”")
        expect(page.locator("#fallback li")).to_have_count(12)
        expect(page.locator("#results li")).to_have_count(0)
        expect(page.locator("#result-count")).to_be_hidden()
        page.click("#fallback li >> nth=0")
        expect(page.locator("#product-view")).to_be_visible()
        page.fill("#q", noun[0] + noun[2] + noun[1] + noun[3:] + " ")  # one swap, a whole word
        page.press("#q", "Enter")
        expect(page.locator("#did-you-mean-link")).to_have_text(noun)
        expect(page.locator("#no-results")).to_be_hidden()
        page.click("#did-you-mean-link")
        expect(page.locator("#result-count")).to_contain_text(f"results for “{noun}”")
        expect(page.locator("#did-you-mean")).to_be_hidden()
        assert page.locator("#results li").count() > 0
        browser.close()
