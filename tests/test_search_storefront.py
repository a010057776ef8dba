"""The storefront's search pages in headless Chromium (Debian's, driven by
Playwright): a query that matches nothing gets a "no results for …" page
with the popular items apart, and a misspelt one a "did you mean" link; what
the query was read for shows as chips above the results, each removable, and
the merchandising rules that changed the results stay out of sight."""

from __future__ import annotations

import re
from collections import Counter

from tests.serving_helpers import CHROMIUM
from tests.test_storefront import storefront  # noqa: F401 (the served storefront, a fixture)


def shown_prices(page, selector: str) -> list[float]:
    texts = page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")
    return [float(m.group(1)) for t in texts for m in [re.search(r"\$([\d.]+)", t)] if m]


def a_brand_and_its_noun(store) -> tuple[str, str, int]:
    """The brand and product noun ("voltix", "smartphone") most titles share,
    and a whole price that some of those items are under and some over."""
    items = store.items[store.items["title"].str.isascii() & (store.items["brand"] != "")]
    nouns = items["title"].str.split().str[-3].str.lower()
    (brand, noun), _ = Counter(zip(items["brand"], nouns, strict=True)).most_common(1)[0]
    prices = items.loc[(items["brand"] == brand) & (nouns == noun), "price"]
    return brand, noun, int(prices.median())


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
        expect(page.locator("#understood")).to_be_hidden()  # nothing was read
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


def test_chips_say_what_was_read_and_their_cross_searches_without_it(storefront, store):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    brand, noun, ceiling = a_brand_and_its_noun(store)
    query = f"{brand.lower()} {noun} under {ceiling}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(storefront)
        page.fill("#q", query)
        with page.expect_response(re.compile(r"/search\?")) as answered:
            page.press("#q", "Enter")
        assert "ignore" not in answered.value.url
        price_chip = page.locator("#understood li[data-kind=price]")
        brand_chip = page.locator("#understood li[data-kind=brand]")
        expect(price_chip).to_have_text(f"price under {ceiling} ×")
        expect(brand_chip).to_have_text(f"brand: {brand} ×")
        prices = shown_prices(page, "#results li .meta")
        assert prices and max(prices) <= ceiling
        with page.expect_response(re.compile(r"/search\?")) as answered:
            price_chip.locator("button").click()
        assert "ignore=price" in answered.value.url
        expect(price_chip).to_have_count(0)
        expect(brand_chip).to_have_text(f"brand: {brand} ×")
        total = answered.value.json()["total"]
        expect(page.locator("#result-count")).to_have_text(f"{total} results for “{query}”")
        assert max(shown_prices(page, "#results li .meta")) > ceiling  # the price no longer holds
        page.press("#q", "Enter")  # a new search reads the whole query again
        expect(price_chip).to_have_count(1)
        browser.close()


def test_a_read_filter_on_a_page_with_no_results_and_the_rules_unseen(storefront):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()

        def with_a_rule(route) -> None:  # as a merchandiser's hide rule would answer
            answer = route.fetch()
            route.fulfill(response=answer, json={**answer.json(), "rules_applied": ["hide-7x"]})

        page.route(re.compile(r"/search\?"), with_a_rule)
        page.goto(storefront)
        page.fill("#q", "xqzv under 50")
        page.press("#q", "Enter")
        expect(page.locator("#no-results")).to_be_visible()
        expect(page.locator("#no-results-title")).to_have_text("No results for “xqzv under 50”")
        expect(page.locator("#understood li")).to_have_text(["price under 50 ×"])
        within = shown_prices(page, "#fallback li .meta")
        assert within and max(within) <= 50  # the popular items keep to the price read
        page.click("#understood li button")
        expect(page.locator("#understood")).to_be_hidden()
        # "under 50" is now searched as words: relaxed to the words that match
        # something, it finds what "50" starts (50ml, 500g), and no fallback.
        expect(page.locator("#no-results")).to_be_hidden()
        results = page.locator("#results li")
        expect(results.first).to_be_visible()
        marked = [t.lower() for t in page.locator("#results li em").all_inner_texts()]
        assert marked and all(t.startswith("50") for t in marked)
        assert "hide-7x" not in page.content()
        browser.close()
