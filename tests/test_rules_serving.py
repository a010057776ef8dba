"""Merchandising rules and stock through the service: the admin API (key,
422s), recommendations that never show a hidden item, out-of-stock items
hidden or sunk, a rule reaching a second worker through the change log, and
``shopsense rules`` on an index folder."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shopsense.cli import cli
from shopsense.search.engine import build_index
from shopsense.search.rules import RULES_FILE, Merchandising
from tests.test_serving_replicas import ADMIN, served, worker

__all__ = ["served"]  # the fixture: a model registry and a lexical index


@pytest.fixture
def client(served, store_dir, tmp_path):
    with worker(served, store_dir, str(tmp_path / "state.db")) as c:
        yield c


def popular(client: TestClient, **params) -> tuple[list[str], list[str]]:
    body = client.get("/recommendations", params={"k": 10, **params}).json()
    return [i["item_id"] for i in body["items"]], body["rules_applied"]


def item_json(store, item_id: str, **changes) -> dict:
    row = store.items.set_index("item_id").loc[item_id]
    item = {"item_id": item_id, "title": row["title"], "category": row["category"],
            "brand": row["brand"], "price": float(row["price"])}  # fmt: skip
    return item | changes


def test_the_rules_api_needs_the_key(client):
    rule = {"action": "hide", "item_id": "x"}
    assert client.put("/admin/rules", json=rule).status_code == 401
    assert client.get("/admin/rules").status_code == 401
    assert (
        client.delete("/admin/rules/a", headers={"Authorization": "Bearer no"}).status_code == 401
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "hide", "item_id": "no-such-item"}, "unknown item 'no-such-item'"),
        ({"action": "pin", "item_id": "{item}", "position": 0, "query": "q"}, "greater than"),
        ({"action": "pin", "item_id": "{item}", "position": 1}, "a query or a category"),
        (
            {
                "action": "hide",
                "item_id": "{item}",
                "starts_at": "2030-01-02T00:00:00",
                "ends_at": "2030-01-01T00:00:00",
            },
            "ends before it starts",
        ),
        ({"action": "boost", "where": {}}, "which items"),
        ({"action": "boost", "where": {"colour": ["red"]}}, "colour"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_422(client, store, rule, message):
    item = str(store.items["item_id"].iloc[0])
    rule = {k: v.replace("{item}", item) if isinstance(v, str) else v for k, v in rule.items()}
    response = client.put("/admin/rules", json=[{"action": "hide", "item_id": item}, rule],
                          headers=ADMIN)  # fmt: skip
    assert response.status_code == 422, response.text
    assert message in response.text
    assert client.get("/admin/rules", headers=ADMIN).json()["rules"] == []  # nothing half put


def test_a_hidden_item_is_never_recommended_and_the_rule_is_named(client, store):
    before, applied = popular(client)
    assert applied == []
    target = before[0]
    put = client.put("/admin/rules", json={"id": "no-top", "action": "hide", "item_id": target},
                     headers=ADMIN)  # fmt: skip
    assert put.status_code == 200 and put.json()[0]["status"] == "active"
    after, applied = popular(client)
    assert target not in after and after[:9] == before[1:] and applied == ["no-top"]
    user = str(store.users["user_id"].iloc[0])
    for path in (f"/recommendations/{user}", f"/items/{before[1]}/similar"):
        shown = client.get(path, params={"k": 50}).json()["items"]
        assert target not in {i["item_id"] for i in shown}, path
    far = before[-1]
    later = {"id": "later", "action": "hide", "item_id": far, "starts_at": "2999-01-01T00:00Z"}
    client.put("/admin/rules", json=later, headers=ADMIN)
    assert far in popular(client)[0]  # a rule whose window has not started does nothing
    listed = client.get("/admin/rules", headers=ADMIN).json()
    assert [(r["id"], r["status"]) for r in listed["rules"]] == [
        ("no-top", "active"),
        ("later", "scheduled"),
    ]
    assert listed["out_of_stock"] == "sink"
    assert client.delete("/admin/rules/no-top", headers=ADMIN).json() == {
        "id": "no-top",
        "deleted": True,
    }
    assert client.delete("/admin/rules/no-top", headers=ADMIN).json()["deleted"] is False
    assert popular(client)[0] == before


def test_a_rule_for_an_item_later_deleted_is_kept_and_reported_inactive(client, store):
    item = str(store.items["item_id"].iloc[5])
    client.put("/admin/rules", json={"id": "h", "action": "hide", "item_id": item}, headers=ADMIN)
    assert client.delete(f"/items/{item}", headers=ADMIN).json()["deleted"]
    rules = client.get("/admin/rules", headers=ADMIN).json()["rules"]
    assert [(r["id"], r["status"]) for r in rules] == [("h", "inactive")]


def test_boosts_reorder_the_recommended_list_without_adding_to_it(client, store):
    before, _ = popular(client)
    brands = store.items.set_index("item_id").loc[before, "brand"].tolist()
    brand = brands[-1]  # the last item's brand: boosting it moves the list
    boost = {"id": "b", "action": "boost", "where": {"brand": [brand]}}
    assert client.put("/admin/rules", json=boost, headers=ADMIN).status_code == 200
    after, applied = popular(client)
    assert sorted(after) == sorted(before) and applied == ["b"]
    boosted = [i for i, b in zip(before, brands, strict=True) if b == brand]
    assert after[: len(boosted)] == boosted


def test_out_of_stock_items_are_sunk_by_default_or_hidden_by_setting(client, store):
    counts = store.items["category"].value_counts()
    category = str(counts[counts >= 3].index[-1])  # a small category: all of it fits in k
    k = int(counts[category])
    listed = client.get("/recommendations", params={"k": k, "category": category}).json()
    first = listed["items"][0]["item_id"]
    gone = item_json(store, first, in_stock=False)
    assert client.put("/items", json=[gone], headers=ADMIN).status_code == 200
    sunk = client.get("/recommendations", params={"k": k, "category": category}).json()["items"]
    assert [i["item_id"] for i in sunk][-1] == first and len(sunk) == k
    assert first not in popular(client)[0]  # below every item in stock
    set_hide = client.put("/admin/out-of-stock", json={"out_of_stock": "hide"}, headers=ADMIN)
    assert set_hide.json() == {"out_of_stock": "hide"}
    hidden = client.get("/recommendations", params={"k": k, "category": category}).json()
    assert first not in {i["item_id"] for i in hidden["items"]}
    assert client.get("/admin/rules", headers=ADMIN).json()["out_of_stock"] == "hide"
    back = item_json(store, first, in_stock=True)
    client.put("/items", json=[back], headers=ADMIN)
    again = client.get("/recommendations", params={"k": k, "category": category}).json()
    assert again["items"][0]["item_id"] == first


def test_a_rule_reaches_every_worker_and_is_saved_with_their_index_copy(
    served, store_dir, tmp_path
):
    original = (served / "index" / RULES_FILE).exists()
    with (
        worker(served, store_dir, str(tmp_path / "state.db")) as a,
        worker(served, store_dir, str(tmp_path / "state.db")) as b,
    ):
        target = popular(b)[0][0]
        rule = {"id": "everywhere", "action": "hide", "item_id": target}
        assert a.put("/admin/rules", json=rule, headers=ADMIN).status_code == 200
        assert target not in popular(b)[0]  # the other worker, at once
        assert [r["id"] for r in b.get("/admin/rules", headers=ADMIN).json()["rules"]] == [
            "everywhere"
        ]
        copy = b.app.state.service.index_copy
        assert Merchandising.load(copy).rule("everywhere") is not None
    assert (served / "index" / RULES_FILE).exists() == original  # the original is not written
    with worker(served, store_dir, str(tmp_path / "state.db")) as late:  # a new worker replays it
        assert target not in popular(late)[0]


def test_the_rules_commands_work_on_an_index_folder(served, store, tmp_path):
    index = tmp_path / "index"
    build_index(store.items.head(20), index, semantic=False)
    item = str(store.items["item_id"].iloc[1])
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, ["rules", *args, "--index", str(index)])

    added = run("add", "--id", "p1", "--action", "pin", "--item", item, "--position", "2",
                "--query", "mug", "--ends", "2999-01-01")  # fmt: skip
    assert added.exit_code == 0, added.output
    boost = run("add", "--id", "b1", "--action", "boost", "--brand", "Acme", "--price-max", "20")
    assert boost.exit_code == 0, boost.output
    listed = json.loads(run("list", "--json").output)
    assert [r["id"] for r in listed["rules"]] == ["p1", "b1"]
    assert listed["rules"][1]["where"] == {"brand": ["Acme"], "price_max": 20.0}
    bad = run("add", "--action", "hide", "--item", "nope")
    assert bad.exit_code != 0 and "unknown item 'nope'" in str(bad.exception)
    file = tmp_path / "rules.json"
    file.write_text(json.dumps([{"id": "h1", "action": "hide", "item_id": item}]))
    assert run("add", "--file", str(file)).exit_code == 0
    assert run("stock", "hide").exit_code == 0
    assert run("delete", "p1").exit_code == 0
    after = Merchandising.load(index)
    assert [r.id for r in after.rules] == ["b1", "h1"] and after.out_of_stock == "hide"
    assert "no rule" in str(run("delete", "p1").exception)


def test_search_answers_name_the_rules_that_changed_them(client, store):
    query = str(store.items["title"].iloc[0]).split()[0]
    before = client.get("/search", params={"q": query}).json()
    assert before["rules_applied"] == [] and before["hits"]
    top = before["hits"][0]["item_id"]
    rule = {"id": "no-top", "action": "hide", "item_id": top}
    assert client.put("/admin/rules", json=rule, headers=ADMIN).status_code == 200
    after = client.get("/search", params={"q": query}).json()  # not the cached page
    assert after["rules_applied"] == ["no-top"] and top not in {h["item_id"] for h in after["hits"]}
    assert after["total"] == before["total"] - 1
    client.delete("/admin/rules/no-top", headers=ADMIN)
    assert client.get("/search", params={"q": query}).json()["hits"] == before["hits"]
