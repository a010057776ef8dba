"""Continuous training (``shopsense retrain``): a challenger trained on the
ingested data plus the live event log and catalogue changes, scored against
the champion on the most recent events, registered only if not worse by the
margin, promoted on demand; and a user's deletion reaching the versions'
own datasets."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shopsense.data.dataset import Dataset
from shopsense.data.erasure import erase_user, erased_users, tombstones, user_hash
from shopsense.data.ingest import ingest
from shopsense.errors import ShopsenseError
from shopsense.models.registry import create_model, load_model
from shopsense.serving import retrain as retrain_module
from shopsense.serving.app import create_app
from shopsense.serving.champion import champion, rollback, served_version
from shopsense.serving.erasure import erase_user_files
from shopsense.serving.recommendations import VERSION_DATA, ModelBundle, model_versions
from shopsense.serving.retrain import Holdout, next_version, retrain
from shopsense.serving.retrain_commands import REFUSED_STATUS, retrain_command
from shopsense.serving.schedule import RetrainSchedule
from shopsense.serving.service import ServiceSettings
from shopsense.serving.store import Event, open_store

KEY = "retrain-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
LIVE_DAYS = 3
NEW_ITEM = "new-arrival"
NEWCOMERS = [f"newcomer-{n}" for n in range(15)]
FAN = "fan"
LATE_FANS = [f"late-fan-{n}" for n in range(10)]
"""A new shopper who viewed only the item the newcomers viewed with the new one."""


@pytest.fixture(scope="module")
def shop(raw_store, tmp_path_factory) -> dict:
    """The small store cut in time: its first days ingested (the dataset a
    champion, v0001, was trained on), its last ``LIVE_DAYS`` left as the live
    events a service would have logged since."""
    root = tmp_path_factory.mktemp("retrain")
    raw = root / "raw"
    shutil.copytree(raw_store, raw, ignore=shutil.ignore_patterns("truth"))
    events = pd.read_parquet(raw / "events.parquet")
    start = int(events["timestamp"].max()) - LIVE_DAYS * 86_400
    events[events["timestamp"] < start].to_parquet(raw / "events.parquet", index=False)
    ingest("parquet", [raw], root / "data", progress=False)
    base = Dataset.load(root / "data")
    create_model("itemknn").fit(base).save(root / "models" / "v0001")
    late = events[events["timestamp"] >= start]
    live = [
        Event(f"late-{n}", r.user_id, r.type, int(r.timestamp), _text(r.item_id),
              _text(r.session_id), _text(r.query))
        for n, r in enumerate(late.itertuples())
    ]  # fmt: skip
    counts = base.interactions["item"].value_counts()
    partner = str(base.items["item_id"].iloc[int(counts.index[-1])])  # the least viewed item
    t = start + 3600
    for n, user in enumerate(NEWCOMERS):
        live += [Event(f"{user}-a", user, "view", t + n, partner),
                 Event(f"{user}-b", user, "view", t + n + 1, NEW_ITEM)]  # fmt: skip
    live.append(Event("fan-a", FAN, "view", t + 100, partner))
    end = int(late["timestamp"].max())
    for n, user in enumerate(LATE_FANS):  # the new item is their first since the cutoff
        live += [Event(f"{user}-a", user, "view", t + 200 + n, partner),
                 Event(f"{user}-b", user, "view", end - 60 + n, NEW_ITEM)]  # fmt: skip
    withdrawn = str(base.items["item_id"].iloc[int(counts.index[0])])  # the most viewed
    return {"root": root, "live": live, "partner": partner, "withdrawn": withdrawn,
            "category": _category(base, partner)}  # fmt: skip


def _text(value) -> str | None:
    return None if pd.isna(value) else str(value)


def _category(dataset: Dataset, item_id: str) -> str:
    return str(dataset.items.set_index("item_id").loc[item_id, "category"])


@pytest.fixture
def setup(shop, tmp_path) -> dict:
    """A copy of the dataset and registry (erasure and registration write to
    them) and a SQLite state holding the live events and the new item's upsert."""
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(shop["root"] / "data", data)
    shutil.copytree(shop["root"] / "models", models)
    state = str(tmp_path / "state.db")
    store = open_store(state)
    store.append_events(shop["live"])
    item = {"item_id": NEW_ITEM, "title": "Brand-new gadget", "brand": "Nova", "price": 19.5,
            "category": shop["category"], "attributes": {"color": "teal"}}  # fmt: skip
    store.append_change("items.upsert", {"items": [item]})
    renamed = {"item_id": shop["partner"], "title": "Renamed", "attributes": {}}
    store.append_change("items.upsert", {"items": [renamed]})
    store.append_change("items.delete", [shop["withdrawn"]])
    return {"data": data, "models": models, "state": state, "store": store, **shop}


def worker(setup: dict) -> TestClient:
    settings = ServiceSettings(data=setup["data"], models=setup["models"], state=setup["state"],
                               api_key=KEY, watch_seconds=0)  # fmt: skip
    return TestClient(create_app(settings))


def test_a_retrain_registers_a_version_with_its_own_data_holding_the_new_shoppers_and_items(setup):
    report = retrain(setup["data"], setup["store"], setup["models"], margin=0.02)
    assert report.accepted and report.version == "v0002" and not report.promoted
    assert report.model == "itemknn" and report.champion == "v0001"  # the champion's kind
    version = setup["models"] / "v0002"
    own = Dataset.load(version / VERSION_DATA)
    base = Dataset.load(setup["data"])
    users = set(own.users["user_id"].astype(str))
    assert {*NEWCOMERS, FAN} <= users and not {*NEWCOMERS, FAN} & set(base.users["user_id"])
    assert NEW_ITEM in set(own.items["item_id"]) and NEW_ITEM not in set(base.items["item_id"])
    added = own.items.set_index("item_id").loc[NEW_ITEM]
    assert added["title"] == "Brand-new gadget" and json.loads(added["attributes"]) == {
        "color": "teal"
    }
    replaced = own.items.iloc[base.item_index(setup["partner"])]
    assert replaced["item_id"] == setup["partner"] and replaced["title"] == "Renamed"
    assert (
        replaced["created_at"] == base.items.iloc[base.item_index(setup["partner"])]["created_at"]
    )
    assert setup["withdrawn"] in set(own.items["item_id"])  # its events still count
    # the dataset's users and items keep their dense ids; the live events are all in
    assert own.users["user_id"].iloc[: base.n_users].tolist() == base.users["user_id"].tolist()
    assert own.items["item_id"].iloc[: base.n_items].tolist() == base.items["item_id"].tolist()
    ingested = json.loads((version / VERSION_DATA / "report.json").read_text())
    assert ingested["input_rows"] == len(base.events) + len(setup["live"])
    assert not ingested["quarantined"] and ingested["accepted"] == len(own.events)
    assert report.dataset["new_users"] == own.n_users - base.n_users > len(NEWCOMERS)
    model = load_model(version)
    assert (model.n_users_, model.n_items_) == (own.n_users, own.n_items)
    items, _ = model.recommend(np.array([own.user_index(FAN)]), k=5)
    assert own.item_index(NEW_ITEM) in items[0]  # collaborative: the newcomers viewed both
    similar, _ = model.similar_items(np.array([own.item_index(NEW_ITEM)]), k=3)
    assert own.item_index(setup["partner"]) in similar[0]
    # the challenger on the newer data does better than the champion on the holdout
    metric = report.metric
    assert report.challenger_scores[metric] >= report.threshold
    assert 0 < report.champion_scores[metric] <= 1 and report.holdout_users > 0
    assert set(report.seconds) == {"combine", "ingest", "fit", "score", "refit", "register"}
    # not promoted: the version served before is pinned, so the new one waits
    assert champion(setup["store"]) == "v0001" == served_version(setup["store"], setup["models"])
    assert [p.name for p in model_versions(setup["models"])] == ["v0001", "v0002"]
    assert not [p for p in setup["models"].parent.iterdir() if ".retrain." in p.name]


def test_the_champion_is_scored_as_served_and_cannot_recommend_what_it_never_saw(setup):
    report = retrain(setup["data"], setup["store"], setup["models"])
    combined = Dataset.load(setup["models"] / report.version / VERSION_DATA)
    live = [e for _, e in setup["store"].events(limit=100_000)]
    holdout = Holdout(combined, live, days=1.0)
    assert holdout.cutoff == report.cutoff and holdout.n_users == report.holdout_users
    assert all(holdout.targets[user] == {NEW_ITEM} for user in LATE_FANS)
    holdout.targets = {user: holdout.targets[user] for user in LATE_FANS}
    champion_bundle = ModelBundle(setup["models"] / "v0001", Dataset.load(setup["data"]))
    assert champion_bundle.user(LATE_FANS[0]) is None  # a stranger to it, served all the same
    assert holdout.score(champion_bundle, set(), 10)["Recall@10"] == 0.0
    challenger = create_model("itemknn").fit(holdout.train).save(setup["models"].parent / "c")
    scores = holdout.score(ModelBundle(challenger, holdout.train), set(), 10)
    assert scores["Recall@10"] == 1.0  # learnt from the newcomers before the cutoff
    assert holdout.score(ModelBundle(challenger, holdout.train), {NEW_ITEM}, 10)["Recall@10"] == 0


def test_a_worse_challenger_is_refused_and_nothing_changes(setup):
    before = sorted(p.name for p in setup["models"].parent.iterdir())
    report = retrain(setup["data"], setup["store"], setup["models"], model="pop", margin=0.0)
    assert not report.accepted and report.version is None
    assert report.challenger_scores["NDCG@10"] < report.champion_scores["NDCG@10"]
    assert "refit" not in report.seconds
    assert sorted(p.name for p in setup["models"].parent.iterdir()) == before
    assert [p.name for p in model_versions(setup["models"])] == ["v0001"]
    assert champion(setup["store"]) is None  # untouched: not even pinned
    with worker(setup) as client:
        assert client.get(f"/recommendations/{FAN}").json()["model_version"] == "v0001"


def test_the_cli_prints_both_scores_and_exits_3_when_refused(setup):
    runner = CliRunner()
    common = ["--data", str(setup["data"]), "--state", setup["state"],
              "--models", str(setup["models"])]  # fmt: skip
    refused = runner.invoke(retrain_command, [*common, "--model", "pop", "--margin", "0"])
    assert refused.exit_code == REFUSED_STATUS, refused.output
    assert "champion v0001" in refused.output and "challenger pop" in refused.output
    assert "refused" in refused.stderr and "v0001 keeps serving" in refused.stderr
    accepted = runner.invoke(
        retrain_command, [*common, "--param", "k=50", "--param", "shrink=5", "--json"]
    )
    assert accepted.exit_code == 0, accepted.output
    report = json.loads(accepted.stdout)
    assert report["version"] == "v0002" and report["params"] == {"k": 50, "shrink": 5}
    assert report["challenger_scores"]["NDCG@10"] >= report["threshold"]
    bad = runner.invoke(retrain_command, [*common, "--param", "k"])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output
    empty = runner.invoke(retrain_command, [*common, "--holdout-days", "1000"])
    assert isinstance(empty.exception, ShopsenseError) and "nothing to train on" in str(
        empty.exception
    )


def test_an_erased_user_does_not_come_back_in_the_new_version(setup):
    store = setup["store"]
    leaver = next(e.user_id for e in setup["live"] if e.event_id.startswith("late-"))
    erase_user(setup["data"], leaver)  # erased from the dataset; the live log still has them
    assert any(e.user_id == leaver for _, e in store.events(limit=100_000))
    report = retrain(setup["data"], store, setup["models"], margin=1 - 1e-9)
    own = setup["models"] / report.version / VERSION_DATA
    assert user_hash(leaver) in tombstones(own)
    assert_absent(leaver, own)


def assert_absent(user_id: str, folder: Path) -> None:
    """No table of the dataset ``folder`` holds ``user_id``, nor any of its text files."""
    dataset = Dataset.load(folder)
    assert user_id not in set(dataset.users["user_id"])
    assert user_id not in set(dataset.source_events()["user_id"])
    for path in folder.iterdir():
        if path.suffix in (".json", ".jsonl"):
            assert user_id not in path.read_text(), path


def test_a_user_deleted_while_retraining_is_erased_from_the_new_version(setup, monkeypatch):
    write = retrain_module._write_combined

    def then_delete(*args):  # the deletion lands after the live events were read
        write(*args)
        erase_user_files(FAN, setup["data"], setup["models"], None)

    monkeypatch.setattr(retrain_module, "_write_combined", then_delete)
    report = retrain(setup["data"], setup["store"], setup["models"])
    version = setup["models"] / report.version
    assert user_hash(FAN) in tombstones(version / VERSION_DATA)
    assert_absent(FAN, version / VERSION_DATA)
    own = Dataset.load(version / VERSION_DATA)
    rows = erased_users(own.users)
    assert len(rows) == 1 and load_model(version).user_items_[rows].nnz == 0


def test_a_failed_retrain_leaves_nothing_behind(setup, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(retrain_module, "_register", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        retrain(setup["data"], setup["store"], setup["models"])
    assert not [p for p in setup["models"].parent.iterdir() if ".retrain." in p.name]
    assert [p.name for p in model_versions(setup["models"])] == ["v0001"]
    with pytest.raises(ShopsenseError, match="margin"):
        retrain(setup["data"], setup["store"], setup["models"], margin=1.5)
    with pytest.raises(ShopsenseError, match="one saved model"):
        retrain(setup["data"], setup["store"], setup["models"] / "v0001")


def test_promote_swaps_the_service_to_the_new_version_and_rollback_back(setup):
    with worker(setup) as client:
        assert client.get(f"/recommendations/{FAN}").json()["model_version"] == "v0001"
        report = retrain(setup["data"], setup["store"], setup["models"], promote=True)
        assert report.promoted and champion(setup["store"]) == "v0002"
        client.app.state.service.changes.catch_up()
        answer = client.get(f"/recommendations/{FAN}", params={"k": 5}).json()
        assert answer["model_version"] == "v0002"
        shown = [item["item_id"] for item in answer["items"]]
        assert NEW_ITEM in shown and setup["withdrawn"] not in shown
        assert rollback(setup["store"], setup["models"]) == "v0001"
        client.app.state.service.changes.catch_up()
        assert client.get(f"/recommendations/{FAN}").json()["model_version"] == "v0001"


def test_deleting_a_user_after_a_retrain_erases_them_from_the_versions_own_data(setup):
    retrain(setup["data"], setup["store"], setup["models"], promote=True)
    version = setup["models"] / "v0002"
    base = Dataset.load(setup["data"])
    own = Dataset.load(version / VERSION_DATA)
    regular = str(base.users["user_id"].iloc[int(base.interactions["user"].iloc[0])])
    rows = {user: own.user_index(user) for user in (NEWCOMERS[0], regular)}
    assert rows[regular] == base.user_index(regular)  # the dataset's dense ids hold
    assert load_model(version).user_items_[list(rows.values())].nnz > 0
    with worker(setup) as client:
        assert client.get(f"/recommendations/{FAN}").json()["model_version"] == "v0002"
        for user in rows:
            assert client.delete(f"/users/{user}", headers=ADMIN).status_code == 200
    for user in rows:
        assert user_hash(user) in tombstones(version / VERSION_DATA)
        assert_absent(user, version / VERSION_DATA)
    assert load_model(version).user_items_[list(rows.values())].nnz == 0
    assert load_model(setup["models"] / "v0001").user_items_[rows[regular]].nnz == 0
    assert_absent(regular, setup["data"])


def test_next_version_follows_the_registry_naming(shop, tmp_path):
    for name in ("v0001", "v0009", "2026-11-20"):
        shutil.copytree(shop["root"] / "models" / "v0001", tmp_path / name)
    assert next_version(tmp_path) == "v0010"
    shutil.rmtree(tmp_path / "v0001")
    shutil.rmtree(tmp_path / "v0009")
    assert next_version(tmp_path) == "v0001"


def test_a_scheduled_retrain_registers_in_a_child_process_and_a_failed_one_is_logged(setup, caplog):
    schedule = RetrainSchedule(0.05, setup["data"], setup["state"], setup["models"], promote=True)
    assert schedule.command()[-1] == "--promote"
    stop = threading.Event()
    runner = threading.Thread(target=schedule.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 120
    while not (setup["models"] / "v0002").is_dir() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    runner.join(timeout=120)
    assert (setup["models"] / "v0002").is_dir() and champion(setup["store"]) == "v0002"
    broken = RetrainSchedule(1, setup["data"], setup["state"], setup["models"] / "missing")
    with caplog.at_level("WARNING", logger="shopsense.serving"):
        assert broken.once() not in (0, 3)
    assert "scheduled retrain failed" in caplog.text
