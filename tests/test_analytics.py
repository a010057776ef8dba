"""Store analytics: the figures of a hand-made log of impressions and events
(each checked against what the log says by hand), the JSON route behind the
key, the page shell without it, the Prometheus counters, and real traffic
through the service counted as it was served (both state backends)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from shopsense.errors import ShopsenseError
from shopsense.evaluation.online import UserMetric, estimate, power_reached
from shopsense.models.registry import create_model
from shopsense.search.engine import build_index
from shopsense.serving.analytics import ImpressionCounters, store_analytics
from shopsense.serving.app import create_app
from shopsense.serving.experiment_report import experiment_report
from shopsense.serving.experiments import Experiment, create_experiment, get_experiment
from shopsense.serving.service import ServiceSettings
from shopsense.serving.store import Event, Impression, StateStore, open_store

KEY = "analytics-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
DAY = 86_400
PAGE = Path(__file__).parents[1] / "src/shopsense/serving/analytics_page/index.html"


def today_at(seconds: int) -> int:
    """A time ``seconds`` after today's UTC midnight (negative: before it)."""
    return int(time.time()) // DAY * DAY + seconds


def hand_made_log(store: StateStore) -> list[Impression]:
    """An experiment ``exp`` on recommendations (u1, u2 in control; u3, u4 in
    treatment), a visitor outside it, an anonymous list, an old one, a similar
    list and six searches; the events that the figures must credit. Returns
    the impressions, which the tests count their expectations from."""
    create_experiment(store, Experiment(
        name="exp", placement="recommendations", arms={"control": "v0001", "treatment": "v0002"},
        shares={"control": 0.5, "treatment": 0.5}, salt="s", started=today_at(-40 * DAY),
    ))  # fmt: skip
    t, yesterday, old = today_at(60), today_at(-3600), today_at(-30 * DAY)

    def shown(request_id, placement, at, items, user, arm=None, query=None, session=None):
        experiment = "exp" if arm else None
        return Impression(request_id, placement, at, tuple(items), user, session, "v0001",
                          experiment, arm, None, query)  # fmt: skip

    impressions = [
        shown("r1", "recommendations", t, "abc", "u1", "control"),
        shown("r2", "recommendations", t, "de", "u1", "control"),
        shown("r3", "recommendations", yesterday, "ab", "u2", "control"),
        shown("r4", "recommendations", t, "ab", "u3", "treatment"),
        shown("r5", "recommendations", t, "a", "u4", "treatment"),
        shown("r6", "recommendations", t, "x", None, session="s1"),
        shown("r7", "recommendations", t, "a", None),  # nobody's: counted apart
        shown("r8", "recommendations", old, "ab", "u1", "control"),  # before the period
        shown("r9", "similar", t - 30, "ab", "u1"),  # before r1: r1 showed b last
        shown("r10", "search", t - 30, "abc", "u1", query="Red Shoes"),
        shown("r11", "search", t, "ab", "u2", query=" red   shoes"),
        shown("r12", "search", t, "", "u1", query="zzz"),
        shown("r13", "search", t, "", "u3", query="ZZZ"),
        shown("r14", "search", t, "de", "u3", query="blue hat"),
        shown("r15", "search", t, "a", "u4", query=""),  # browsing: no query to list
    ]
    store.append_impressions(impressions)

    def did(kind, item, user, request_id=None, value=None, session=None):
        return Event(f"{kind}-{item}-{user}-{request_id}", user, kind, t + 10, item, session,
                     None, request_id, value)  # fmt: skip

    store.append_events([
        did("click", "b", "u1", "r1"),
        did("cart", "b", "u1", "r1"),
        did("purchase", "b", "u1", value=30.0),  # no request id: the last list that showed b
        did("click", "a", "u3", "r4"),
        did("click", "b", "u3", "r4"),
        did("purchase", "a", "u3", "r4", value=10.0),
        did("click", "a", "u4", "r5"),
        did("click", "x", "anonymous", "r6", session="s1"),
        did("click", "c", "u1", "r10"),  # search position 3
        did("click", "a", "u2", "r11"),  # search position 1
        did("click", "z", "u2", "r11"),  # not shown there: not credited
    ])  # fmt: skip
    return impressions


def figures_today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def check_interval(found: dict, numerators: list[float], denominators: list[float]) -> None:
    """``found`` is the delta-method estimate over these shoppers (any order)."""
    expected = estimate(UserMetric(np.array(numerators, float), np.array(denominators, float)))
    assert found["value"] == pytest.approx(expected.value)
    assert [found["low"], found["high"]] == pytest.approx(list(expected.ci))
    assert found["low"] <= found["value"] <= found["high"]


@pytest.fixture(scope="module")
def served(store, tmp_path_factory) -> dict[str, Path]:
    """Two model versions and a lexical search index."""
    root = tmp_path_factory.mktemp("analytics")
    create_model("pop").fit(store).save(root / "models" / "v0001")
    create_model("itemknn").fit(store).save(root / "models" / "v0002")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    return {"models": root / "models", "index": root / "index"}


def worker(served: dict[str, Path], store_dir: Path, state: str, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(
        data=store_dir, models=served["models"], index=served["index"], state=state,
        api_key=KEY, watch_seconds=0, **settings,
    )))  # fmt: skip


def by_arm(placement: dict) -> dict:
    return {(a["experiment"], a["arm"]): a for a in placement["arms"]}


def test_the_figures_of_a_hand_made_log_are_what_the_log_says(served, store_dir, state):
    impressions = hand_made_log(open_store(state))
    with worker(served, store_dir, state) as client:
        answer = client.get("/admin/analytics/data", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    figures = answer.json()
    assert len(figures["days"]) == 14
    assert figures["anonymous_impressions"] == 1
    placements = {p["placement"]: p for p in figures["placements"]}
    assert list(placements) == ["recommendations", "similar", "search"]

    shown = placements["recommendations"]  # r1-r6: r7 has no shopper, r8 is too old
    counted = [i for i in impressions if i.placement == "recommendations"][:6]
    assert shown["impressions"] == len(counted) == 6
    assert shown["users"] == len({i.user_id or i.session_id for i in counted}) == 5
    assert (shown["clicks"], shown["carts"], shown["purchases"]) == (5, 1, 2)
    assert shown["revenue"] == 40.0
    # per shopper u1, u2, u3, u4, s1: clicks over impressions
    check_interval(shown["ctr"], [1, 0, 2, 1, 1], [2, 1, 1, 1, 1])
    check_interval(shown["conversion"], [1, 0, 1, 0, 0], [1] * 5)
    check_interval(shown["revenue_per_visitor"], [30, 0, 10, 0, 0], [1] * 5)
    check_interval(shown["add_to_cart_rate"], [1, 0, 0, 0, 0], [2, 1, 1, 1, 1])

    arms = by_arm(shown)
    assert list(arms) == [(None, None), ("exp", "control"), ("exp", "treatment")]
    control, treatment, outside = arms["exp", "control"], arms["exp", "treatment"], arms[None, None]
    assert (control["users"], control["impressions"], control["clicks"]) == (2, 3, 1)
    assert (control["purchases"], control["revenue"]) == (1, 30.0)  # bought b, shown in r1
    check_interval(control["revenue_per_visitor"], [30, 0], [1, 1])
    assert (treatment["users"], treatment["clicks"], treatment["revenue"]) == (2, 3, 10.0)
    assert (outside["users"], outside["impressions"], outside["clicks"]) == (1, 1, 1)
    assert outside["ctr"] == {"value": 1.0, "low": None, "high": None}  # one shopper: no interval

    daily = {d["day"]: d for d in control["daily"]}
    assert list(daily) == figures["days"]
    assert [daily[figures["days"][-2]]["impressions"], daily[figures["days"][-1]]["impressions"]] \
        == [1, 2]  # fmt: skip
    assert sum(d["impressions"] for d in shown["daily"]) == shown["impressions"]
    assert sum(d["clicks"] for d in control["daily"]) == control["clicks"]

    assert (placements["similar"]["impressions"], placements["similar"]["clicks"]) == (1, 0)

    search = figures["search"]
    assert (search["searches"], search["zero_result_searches"]) == (6, 2)
    top = [(q["query"], q["searches"], q["users"], q["clicks"]) for q in search["top_queries"]]
    assert top == [("red shoes", 2, 2, 2), ("zzz", 2, 2, 0), ("blue hat", 1, 1, 0)]
    assert [(q["query"], q["zero_results"]) for q in search["zero_result_queries"]] == [("zzz", 2)]
    assert [q["query"] for q in search["no_click_queries"]] == ["blue hat"]
    curve = search["click_positions"]
    assert [(p["position"], p["impressions"], p["clicks"]) for p in curve] == [
        (1, 4, 1), (2, 3, 0), (3, 1, 1)]  # fmt: skip
    check_interval(curve[0]["ctr"], [0, 1, 0, 0], [1, 1, 1, 1])  # u1, u2, u3, u4 at position 1

    [exp] = figures["experiments"]
    report = experiment_report(open_store(state), get_experiment(open_store(state), "exp"))
    ctr = report["comparisons"]["treatment"]["ctr"]
    [lift] = exp["lifts"]
    assert (exp["status"], exp["users"], lift["arm"]) == ("running", 4, "treatment")
    assert lift["absolute"]["value"] == pytest.approx(ctr["absolute_lift"])
    assert [lift["absolute"]["low"], lift["absolute"]["high"]] == pytest.approx(ctr["absolute_ci"])
    assert (lift["p_value"], lift["sequential_p_value"]) == (
        ctr["p_value"],
        ctr["sequential_p_value"],
    )
    assert exp["sample_ratio_p_value"] == report["sample_ratio"]["p_value"]
    assert exp["sample_ratio_mismatch"] is False
    # power from the control's own CTR over the whole experiment: u1 saw r1, r2, r8 and clicked once
    baseline = UserMetric(np.array([1.0, 0.0]), np.array([3.0, 1.0]))
    assert lift["power"] == pytest.approx(power_reached(baseline, 0.1, 4, cuped=False))
    assert lift["users_needed"] > 4


def test_the_period_leaves_out_what_was_shown_before_it(served, store_dir, state):
    hand_made_log(open_store(state))
    figures = store_analytics(open_store(state), days=1)
    [day] = figures.days
    recommendations = figures.placements[0]
    assert [d.day for d in recommendations.daily] == [day]
    assert recommendations.impressions == 5  # r3 was yesterday
    control = {(a.experiment, a.arm): a for a in recommendations.arms}["exp", "control"]
    assert (control.users, control.impressions) == (1, 2)
    longer = store_analytics(open_store(state), days=60)
    assert longer.placements[0].impressions == 7  # and r8, 30 days ago


def test_bad_parameters_are_refused_with_the_reason(tmp_path):
    shared = open_store(str(tmp_path / "state.db"))
    for bad, message in [({"days": 0}, "days"), ({"top": 0}, "top"), ({"relative_mde": 0}, "mde")]:
        with pytest.raises(ShopsenseError, match=message):
            store_analytics(shared, **bad)


def test_the_data_needs_the_key_and_the_page_holds_no_figure(served, store_dir, tmp_path):
    state = str(tmp_path / "state.db")
    hand_made_log(open_store(state))
    with worker(served, store_dir, state) as client:
        assert client.get("/admin/analytics/data").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/admin/analytics/data", headers=wrong).status_code == 401
        page = client.get("/admin/analytics")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.content == PAGE.read_bytes()  # the file as it is: nothing from the store
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name, kind in [("analytics.js", "javascript"), ("analytics.css", "text/css")]:
            asset = client.get(f"/admin/analytics/assets/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert client.get("/admin/analytics/assets/secret.py").status_code == 422
        for bad in ({"days": 0}, {"days": 400}, {"top": 0}, {"mde": 0}):
            assert client.get("/admin/analytics/data", params=bad, headers=ADMIN).status_code == 422
        three = client.get("/admin/analytics/data", params={"days": 3}, headers=ADMIN).json()
        assert len(three["days"]) == 3 and three["days"][-1] == figures_today()
        spec = client.get("/openapi.json").json()["paths"]
    data = spec["/admin/analytics/data"]["get"]
    assert data["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Analytics"
    }
    assert "401" in data["responses"]
    assert {p["name"] for p in data["parameters"]} == {"days", "top", "mde"}
    assert [path for path in spec if path.startswith("/admin/analytics")] == [
        "/admin/analytics/data"
    ]  # the page and its files are not API


def test_served_lists_are_counted_by_placement_and_zero_result_searches_listed(
    served, store_dir, store, state
):
    users = [str(u) for u in store.users["user_id"].iloc[:3]]
    item = str(store.items["item_id"].iloc[0])
    word = store.items["title"].iloc[0].split()[0]
    with worker(served, store_dir, state) as client:
        for user in users:
            client.get(f"/recommendations/{user}", params={"k": 4})
        visitor = client.get("/recommendations", params={"session_id": "visit-1", "k": 4}).json()
        client.get(f"/items/{item}/similar", params={"user_id": users[0]})
        found = client.get("/search", params={"q": word, "user_id": users[1]}).json()
        client.get("/search", params={"q": "qqqxxyyzz", "user_id": users[2]})
        clicked = found["hits"][1]["item_id"]
        client.post("/events", json=[
            {"user_id": users[1], "type": "click", "item_id": clicked,
             "request_id": found["request_id"]},
            {"user_id": "visit-1", "session_id": "visit-1", "type": "click",
             "item_id": visitor["items"][0]["item_id"], "request_id": visitor["request_id"]},
        ])  # fmt: skip
        client.app.state.service.impressions.flush()
        figures = client.get("/admin/analytics/data", headers=ADMIN).json()
    placements = {p["placement"]: p for p in figures["placements"]}
    assert (placements["recommendations"]["impressions"], placements["recommendations"]["users"]) \
        == (4, 4)  # fmt: skip
    assert placements["recommendations"]["clicks"] == 1
    assert (placements["similar"]["impressions"], placements["search"]["impressions"]) == (1, 2)
    search = figures["search"]
    assert search["zero_result_searches"] == 1
    assert [q["query"] for q in search["zero_result_queries"]] == ["qqqxxyyzz"]
    assert [(q["query"], q["clicks"]) for q in search["top_queries"]] == sorted(
        [(word.casefold(), 1), ("qqqxxyyzz", 0)]
    )
    assert [p["clicks"] for p in search["click_positions"][:2]] == [0, 1]


def test_prometheus_counts_impressions_by_placement_and_arm(tmp_path):
    registry = CollectorRegistry()
    counters = ImpressionCounters(registry)
    impressions = hand_made_log(open_store(str(tmp_path / "state.db")))
    counters.count(impressions[:8])
    counters.count(impressions[8:])

    def counted(placement: str, arm: str) -> float | None:
        found = [
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == "shopsense_impressions_total"
            and (sample.labels["placement"], sample.labels["arm"]) == (placement, arm)
        ]
        return sum(found) if found else None

    assert counted("recommendations", "control") == sum(i.arm == "control" for i in impressions)
    assert counted("recommendations", "default") == 2  # the visitor and the anonymous list
    assert counted("search", "default") == 6 and counted("similar", "default") == 1
    assert counted("similar", "control") is None


def test_an_interleaving_experiment_shows_its_preference_test(tmp_path):
    shared = open_store(str(tmp_path / "state.db"))
    create_experiment(shared, Experiment(
        name="tdi", placement="similar", arms={"pop": "v0001", "knn": "v0002"}, kind="interleaving",
        shares={"pop": 0.5, "knn": 0.5}, salt="s", started=today_at(-DAY),
    ))  # fmt: skip
    t = today_at(60)
    shared.append_impressions([
        Impression(f"r{n}", "similar", t, ("a", "b"), f"u{n}", None, "v0001+v0002", "tdi",
                   "interleaved", ("pop", "knn") if n % 2 else ("knn", "pop"))
        for n in range(6)
    ])  # fmt: skip
    # every shopper clicks the first item: odd shoppers credit pop, even ones knn; u0 clicks b too
    shared.append_events([Event(f"e{n}", f"u{n}", "click", t + 5, "a", request_id=f"r{n}")
                          for n in range(6)] + [Event("e-b", "u0", "click", t + 6, "b",
                                                      request_id="r0")])  # fmt: skip
    figures = store_analytics(shared)
    [tdi] = figures.experiments
    test = experiment_report(shared, get_experiment(shared, "tdi"))["interleaving"]
    assert (tdi.kind, tdi.lifts, tdi.sample_ratio_p_value) == ("interleaving", [], None)
    preference = tdi.interleaving
    assert (preference.a, preference.b, preference.users) == ("pop", "knn", 6)
    assert (preference.prefer_a, preference.prefer_b) == (3, 2)  # u0 tied
    assert preference.preference.value == pytest.approx(test["preference"]) == -1 / 5
    assert [preference.preference.low, preference.preference.high] == pytest.approx(test["ci"])
    assert preference.p_value == test["p_value"]
    similar = {(a.experiment, a.arm): a for a in figures.placements[1].arms}
    assert (similar["tdi", "interleaved"].impressions, similar["tdi", "interleaved"].clicks) == (
        6,
        7,
    )
