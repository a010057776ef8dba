"""Online experiments end to end: the registry and assignment, impressions,
attribution, the report, promotion and rollback, through the HTTP API and
the CLI, on two workers sharing one state store (both backends)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shopsense.cli import cli
from shopsense.errors import ShopsenseError
from shopsense.models.registry import create_model
from shopsense.serving.app import create_app
from shopsense.serving.attribution import attribute
from shopsense.serving.champion import champion, promote, rollback, served_version
from shopsense.serving.experiments import (
    Experiment,
    create_experiment,
    parse_shares,
    running,
    stop_experiment,
)
from shopsense.serving.impressions import ImpressionLog
from shopsense.serving.service import ServiceSettings
from shopsense.serving.store import Event, Impression, StoreUnavailable, open_store

KEY = "experiment-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}


def experiment(**overrides) -> Experiment:
    fields = {"name": "exp", "placement": "recommendations",
              "arms": {"control": "v0001", "treatment": "v0002"},
              "shares": {"control": 0.5, "treatment": 0.5}, "salt": "s"}  # fmt: skip
    return Experiment(**{**fields, **overrides})


# ------------------------------------------------------------------ assignment
def test_assignment_is_a_pure_function_of_salt_and_shopper_and_follows_the_shares():
    exp = experiment(shares={"control": 0.2, "treatment": 0.3})
    arms = [exp.assign(f"user-{n}") for n in range(20_000)]
    assert arms == [exp.assign(f"user-{n}") for n in range(20_000)]
    assert abs(arms.count("control") / 20_000 - 0.2) < 0.015
    assert abs(arms.count("treatment") / 20_000 - 0.3) < 0.015
    assert abs(arms.count(None) / 20_000 - 0.5) < 0.015  # the rest see the champion
    assert exp.assign(None) is None
    other = experiment(salt="another")
    moved = sum(exp.assign(f"user-{n}") != other.assign(f"user-{n}") for n in range(2000))
    assert moved > 500  # a new salt reshuffles shoppers


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "no spaces"}, "name"),
        ({"placement": "homepage"}, "placement"),
        ({"arms": {"only": "v0001"}, "shares": {"only": 1.0}}, "two arms"),
        ({"shares": {"control": 0.7, "treatment": 0.7}}, "add up"),
        ({"shares": {"control": 0.5}}, "every arm a share"),
        ({"metric": "dwell"}, "metrics"),
        ({"placement": "search"}, "search arm"),
        (
            {
                "kind": "interleaving",
                "arms": {"a": "1", "b": "2", "c": "3"},
                "shares": {"a": 0.3, "b": 0.3, "c": 0.3},
            },
            "exactly two",
        ),
    ],
)
def test_a_bad_experiment_is_refused_with_the_reason(overrides, message):
    with pytest.raises(ShopsenseError, match=message):
        experiment(**overrides)


def test_traffic_shares_parse_in_the_arms_order():
    arms = {"a": "v1", "b": "v2"}
    assert parse_shares(arms, "0.1/0.3") == {"a": 0.1, "b": 0.3}
    assert parse_shares(arms, None) == {"a": 0.5, "b": 0.5}
    for bad in ("0.5", "x/y", "0.5/0.5/0.5"):
        with pytest.raises(ShopsenseError, match="traffic"):
            parse_shares(arms, bad)


# ------------------------------------------------------------------ attribution
def shown(request_id, items, ts=100, user="u1", arm="control", **extra) -> Impression:
    return Impression(request_id, "recommendations", ts, tuple(items), user_id=user,
                      experiment="exp", arm=arm, **extra)  # fmt: skip


def acted(kind, item, ts, request_id=None, user="u1", value=None, session=None) -> Event:
    return Event(f"{kind}-{item}-{ts}-{request_id}", user, kind, ts, item, session, None,
                 request_id, value)  # fmt: skip


def test_clicks_are_credited_to_the_list_they_name_and_the_rest_is_counted_not_lost():
    impressions = [shown("r1", ["a", "b"]), shown("r2", ["c"], ts=200, user="u2", arm="treatment")]
    events = [
        acted("click", "b", 110, "r1"),
        acted("click", "c", 210, "r2", user="u2"),
        acted("click", "a", 110, "nope"),  # unknown request id
        acted("click", "z", 110, "r1"),  # not in that list
        acted("click", "a", 100 + 90_000, "r1"),  # after the window
        acted("click", "a", 120),  # organic: no request id
        acted("view", "a", 120, "r1"),  # views are not credited
    ]
    result = attribute(impressions, events, window_seconds=86_400)
    assert result.by_shopper["user:u1", "control"].clicks == 1
    assert result.by_shopper["user:u1", "control"].impressions == 1
    assert result.by_shopper["user:u2", "treatment"].clicks == 1
    assert result.uncredited == {"unknown": 1, "not_shown": 1, "expired": 1}


def test_a_request_id_credits_only_its_own_shopper_once_an_item_and_its_own_list():
    impressions = [
        shown("r1", ["a", "b"]),
        shown("r1", ["a", "b"]),  # written twice (a retried store write): one impression
        Impression("s1", "search", 100, ("c",), user_id="u1"),  # another placement's list
    ]
    events = [
        acted("click", "a", 110, "r1", user="mallory"),  # someone else's request id
        acted("purchase", "a", 111, "r1", user="mallory", value=99_999.0),
        acted("click", "a", 112, "r1"),
        acted("click", "a", 113, "r1"),  # the same click again
        acted("purchase", "c", 120, "s1", value=5.0),  # the search list's, not the arm's
    ]
    only_arms = attribute(impressions, events, 86_400, cell=lambda i: i.arm)
    row = only_arms.by_shopper["user:u1", "control"]
    assert (row.impressions, row.clicks, row.purchases, row.revenue) == (1, 1, 0, 0.0)
    assert only_arms.uncredited == {"other_shopper": 2, "repeated_click": 1}
    assert ("user:mallory", "control") not in only_arms.by_shopper


def test_a_purchase_goes_to_the_last_list_that_showed_the_item_within_the_window():
    impressions = [
        shown("r1", ["a"], ts=100),
        shown("r2", ["a"], ts=500, arm="treatment"),  # same shopper, later list
        shown("r3", ["b"], ts=100, user=None, session_id="s1"),
    ]
    events = [
        acted("purchase", "a", 600, value=20.0),  # → r2 (the last before it)
        acted("cart", "a", 300),  # → r1 (r2 came after)
        acted("purchase", "a", 500 + 86_401, value=5.0),  # past r2's window: nobody's
        acted("purchase", "b", 150, user="anonymous", session="s1", value=7.5),  # by session
    ]
    result = attribute(impressions, events, window_seconds=86_400)
    later = result.by_shopper["user:u1", "treatment"]
    assert (later.purchases, later.revenue) == (1, 20.0)
    assert result.by_shopper["user:u1", "control"].carts == 1
    assert result.by_shopper["session:s1", "control"].revenue == 7.5


def test_interleaved_clicks_are_credited_to_the_team_that_placed_the_item():
    impressions = [shown("r1", ["a", "b", "c"], arm="interleaved", teams=("x", "y", "x"))]
    events = [acted("click", "a", 101, "r1"), acted("click", "c", 102, "r1"),
              acted("click", "b", 103, "r1")]  # fmt: skip
    row = attribute(impressions, events, 86_400).by_shopper["user:u1", "interleaved"]
    assert row.clicks == 3 and row.credit == {"x": 2, "y": 1}


# ------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def registry(store, tmp_path_factory) -> Path:
    """Two model versions: ALS (v0001) and popularity (v0002)."""
    root = tmp_path_factory.mktemp("experiments")
    create_model("als", factors=8, iterations=3).fit(store).save(root / "models" / "v0001")
    create_model("pop").fit(store).save(root / "models" / "v0002")
    return root / "models"


def worker(registry: Path, store_dir: Path, state: str) -> TestClient:
    settings = ServiceSettings(data=store_dir, models=registry, state=state, api_key=KEY,
                               watch_seconds=0)  # fmt: skip
    return TestClient(create_app(settings))


def flush(*clients: TestClient) -> None:
    for client in clients:
        client.app.state.service.impressions.flush()


def users_of(store, n: int) -> list[str]:
    return [str(u) for u in store.users["user_id"].iloc[:n]]


def test_an_experiment_splits_shoppers_the_same_way_on_every_worker_and_is_measured(
    registry, store_dir, store, state
):
    with worker(registry, store_dir, state) as a, worker(registry, store_dir, state) as b:
        assert a.get("/recommendations/x").json()["model_version"] == "v0002"  # newest
        body = {"name": "als-vs-pop", "placement": "recommendations",
                "arms": {"control": "v0002", "treatment": "v0001"}}  # fmt: skip
        assert a.post("/admin/experiments", json=body).status_code == 401
        created = a.post("/admin/experiments", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert a.post("/admin/experiments", json=body, headers=ADMIN).status_code == 409
        seen: dict[str, str] = {}
        clicks = []
        for n, user in enumerate(users_of(store, 40)):
            client = (a, b)[n % 2]
            answer = client.get(f"/recommendations/{user}", params={"k": 5}).json()
            again = (b, a)[n % 2].get(f"/recommendations/{user}", params={"k": 5}).json()
            assert answer["experiment"] == "als-vs-pop" and answer["arm"] == again["arm"]
            expected = {"control": "v0002", "treatment": "v0001"}[answer["arm"]]
            assert answer["model_version"] == expected and answer["mode"] == "online"
            seen[user] = answer["arm"]
            if answer["arm"] == "treatment":  # treatment's shoppers click its first item
                item = answer["items"][0]["item_id"]
                clicks.append({"user_id": user, "type": "click", "item_id": item,
                               "request_id": answer["request_id"]})  # fmt: skip
        assert set(seen.values()) == {"control", "treatment"}
        clicks.append({"user_id": "x", "type": "click", "item_id": item, "request_id": "stale"})
        assert a.post("/events", json=clicks).status_code == 200
        flush(a, b)
        report = b.get("/admin/experiments/als-vs-pop", headers=ADMIN).json()
        arms = report["arms"]
        assert arms["treatment"]["users"] == sum(v == "treatment" for v in seen.values())
        assert arms["control"]["impressions"] + arms["treatment"]["impressions"] == 80
        assert arms["treatment"]["clicks"] == len(clicks) - 1 and arms["control"]["clicks"] == 0
        assert report["uncredited_events"] == {"unknown": 1}
        ctr = report["comparisons"]["treatment"]["ctr"]
        assert ctr["absolute_lift"] > 0 and 0 <= ctr["p_value"] <= 1
        assert 0 <= report["sample_ratio"]["p_value"] <= 1

        promoted = a.post("/admin/experiments/als-vs-pop/promote", headers=ADMIN,
                          json={"arm": "treatment"})  # fmt: skip
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["status"] == "promoted"
        for client in (a, b):  # the champion everywhere, the experiment over
            answer = client.get(f"/recommendations/{users_of(store, 1)[0]}").json()
            assert answer["model_version"] == "v0001" and answer["experiment"] is None
        listed = a.get("/admin/experiments", headers=ADMIN).json()
        assert [(e["name"], e["winner"]) for e in listed] == [("als-vs-pop", "treatment")]


def test_every_list_response_is_an_impression_and_a_deleted_user_takes_theirs_along(
    registry, store_dir, store, state, tmp_path
):
    user = users_of(store, 1)[0]
    item = str(store.items["item_id"].iloc[0])
    data, models = tmp_path / "data", tmp_path / "models"  # the deletion erases from files
    shutil.copytree(store_dir, data)
    shutil.copytree(registry, models)
    with worker(models, data, state) as a:
        a.get(f"/recommendations/{user}")
        a.get("/recommendations", params={"session_id": "visit-1"})
        a.get(f"/items/{item}/similar", params={"user_id": user})
        flush(a)
        logged = [i for _, i in open_store(state).impressions()]
        assert [i.placement for i in logged] == ["recommendations", "recommendations", "similar"]
        assert logged[1].session_id == "visit-1" and logged[1].user_id is None
        assert all(i.model_version == "v0002" and len(i.items) for i in logged)
        metrics = a.get("/metrics").text
        series = 'shopsense_impressions_total{arm="default",experiment="none",placement="%s"} %s'
        assert series % ("recommendations", "2.0") in metrics
        assert series % ("similar", "1.0") in metrics
        assert a.delete(f"/users/{user}", headers=ADMIN).status_code == 200
        assert [i.session_id for _, i in open_store(state).impressions()] == ["visit-1"]


def test_interleaving_merges_two_versions_and_credits_clicks_to_their_team(
    registry, store_dir, store, state
):
    with worker(registry, store_dir, state) as a:
        body = {"name": "tdi", "placement": "recommendations", "kind": "interleaving",
                "arms": {"pop": "v0002", "als": "v0001"}, "shares": [0.5, 0.5]}  # fmt: skip
        assert a.post("/admin/experiments", json=body, headers=ADMIN).status_code == 201
        clicks = []
        for user in users_of(store, 30):
            answer = a.get(f"/recommendations/{user}", params={"k": 6}).json()
            assert answer["arm"] == "interleaved" and answer["model_version"] == "v0002+v0001"
            ids = [i["item_id"] for i in answer["items"]]
            assert len(ids) == len(set(ids)) == 6
            clicks += [{"user_id": user, "type": "click", "item_id": i,
                        "request_id": answer["request_id"]} for i in ids[:2]]  # fmt: skip
        a.post("/events", json=clicks)
        flush(a)
        teams = [i.teams for _, i in open_store(state).impressions()]
        assert all(t is not None and set(t) <= {"pop", "als"} for t in teams)
        report = a.get("/admin/experiments/tdi", headers=ADMIN).json()
        assert report["arms"]["interleaved"]["clicks"] == 60
        assert report["interleaving"]["users"] == 30


def test_a_version_that_does_not_load_here_leaves_the_service_up_on_the_champion(
    registry, store_dir, store, state
):
    with worker(registry, store_dir, state) as a:
        shared = open_store(state)
        create_experiment(shared, experiment(name="ghost", arms={"c": "v0002", "t": "v9999"},
                                             shares={"c": 0.5, "t": 0.5}))  # fmt: skip
        shared.close()
        a.app.state.service.changes.catch_up()
        assert a.get("/health/ready").status_code == 200
        answer = a.get(f"/recommendations/{users_of(store, 1)[0]}").json()
        assert answer["experiment"] is None and answer["model_version"] == "v0002"
        body = {"name": "typo", "placement": "similar", "arms": {"c": "v0002", "t": "v9"}}
        assert a.post("/admin/experiments", json=body, headers=ADMIN).status_code == 404


# ------------------------------------------------------------------ champion
def test_promote_and_rollback_move_the_champion_and_a_new_version_waits(registry, tmp_path):
    state = open_store(str(tmp_path / "state.db"))
    assert champion(state) is None and served_version(state, registry) == "v0002"
    promote(state, registry, "v0001")
    assert served_version(state, registry) == "v0001"
    with pytest.raises(ShopsenseError, match="no model version"):
        promote(state, registry, "v0404")
    promote(state, registry, "v0002")
    assert rollback(state, registry) == "v0001" and champion(state) == "v0001"
    assert rollback(state, registry) == "v0002"  # back to what the rollback replaced
    fresh = open_store(str(tmp_path / "other.db"))
    assert rollback(fresh, registry) == "v0001"  # nothing promoted: the version before
    fresh = open_store(str(tmp_path / "third.db"))
    promote(fresh, registry, "v0001")
    assert rollback(fresh, registry) == "v0002"  # what v0001 replaced, the newest
    promote(fresh, registry, "v0001")  # promoting what is served already (a control that won)
    assert rollback(fresh, registry) == "v0002"  # still returns to what v0001 replaced
    fresh = open_store(str(tmp_path / "fourth.db"))
    fresh.append_change("model.promote", {"version": "v0001"})  # a log from before "previous"
    with pytest.raises(ShopsenseError, match="oldest"):
        rollback(fresh, registry)


def test_the_cli_runs_an_experiment_from_create_to_promote(registry, store_dir, store, tmp_path):
    state = str(tmp_path / "state.db")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("experiment", "create", "cli-exp", "--state", state, "--placement",
              "recommendations", "--arm", "control=v0002", "--arm", "treatment=v0001",
              "--traffic", "0.5/0.5", "--metric", "ctr", "--models", str(registry))  # fmt: skip
    assert "cli-exp running on recommendations" in out
    too_long = ["--attribution-hours", "1e308"]
    for bad, message in (
        (["--arm", "t=v0001"], "give --models"),
        (["--arm", "t=v7777", "--models", str(registry)], "no model version"),
        (["--arm", "t=v0001", "--models", str(registry), *too_long], "not in the range"),
    ):
        refused = runner.invoke(
            cli, ["experiment", "create", "bad", "--state", state, "--placement", "similar",
                  "--arm", "c=v0002", *bad],
        )  # fmt: skip
        assert refused.exit_code != 0
        assert message in refused.output + str(refused.exception)
    assert "cli-exp" in run("experiment", "list", "--state", state)
    with worker(registry, store_dir, state) as a:
        for user in users_of(store, 20):
            a.get(f"/recommendations/{user}")
        flush(a)
    report = json.loads(run("experiment", "show", "cli-exp", "--state", state, "--json"))
    assert sum(arm["users"] for arm in report["arms"].values()) == 20
    assert {"p_value", "sequential_p_value", "relative_ci"} <= set(
        report["comparisons"]["treatment"]["ctr"]
    )
    assert "sample ratio p" in run("experiment", "show", "cli-exp", "--state", state)
    refused = runner.invoke(cli, ["experiment", "promote", "cli-exp", "--state", state,
                                  "--models", str(registry)])  # fmt: skip
    assert refused.exit_code != 0 and "has won" in str(refused.exception or refused.output)
    run("experiment", "promote", "cli-exp", "--state", state, "--models", str(registry),
        "--arm", "treatment")  # fmt: skip
    assert champion(open_store(state)) == "v0001"
    assert "champion: v0002" in run("rollback", "--state", state, "--models", str(registry))


def test_two_experiments_created_at_once_on_one_placement_leave_one_running(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = str(tmp_path / "state.db")

    def create(n: int) -> bool:
        store = open_store(path)  # a connection each, as two processes would have
        try:
            create_experiment(store, experiment(name=f"race{n}"))
            return True
        except ShopsenseError:
            return False
        finally:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(create, range(6)))
    store = open_store(path)
    assert sum(created) == 1 and len(running(store)) == 1
    stop_experiment(store, running(store)["recommendations"].name)
    create_experiment(store, experiment(name="after"))  # stopping let the placement go
    assert running(store)["recommendations"].name == "after"


def test_impressions_wait_in_order_while_the_store_is_down_and_the_oldest_go_first(tmp_path):
    store = open_store(str(tmp_path / "state.db"))
    written = store.append_impressions
    down = {"now": True}

    def flaky(batch):
        if down["now"]:
            raise StoreUnavailable("down")
        written(batch)

    store.append_impressions = flaky
    counted: list[int] = []
    log = ImpressionLog(store, max_queued=5, on_written=lambda batch: counted.append(len(batch)))
    for n in range(7):
        log.record(shown(f"r{n}", ["a"]))
    assert log.flush() == 0 and log.dropped == 2  # kept, the two oldest dropped
    down["now"] = False
    assert log.flush() == 5 and counted == [5]
    assert [i.request_id for _, i in store.impressions()] == ["r2", "r3", "r4", "r5", "r6"]
