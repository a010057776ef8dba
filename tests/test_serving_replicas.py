"""One truth across workers: two services (as two workers or two machines
would be) sharing one state store see each other's changes through the change
log, on both backends, and never write the index they were started with."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shopsense.data.dataset import Dataset
from shopsense.data.erasure import read_tombstones, tombstones, user_hash
from shopsense.data.ingest import ingest
from shopsense.models.registry import create_model, load_model
from shopsense.search.engine import build_index
from shopsense.serving.app import create_app
from shopsense.serving.batch import precompute
from shopsense.serving.recommendations import ModelBundle
from shopsense.serving.service import ServiceSettings

KEY = "replica-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
NEW_ITEM = {"item_id": "zz-new", "title": "Quasar teapot", "category": "Home", "price": 12.5}


@pytest.fixture(scope="module")
def served(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    create_model("itemknn").fit(store).save(root / "models" / "v0001")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    return root


def worker(served: Path, store_dir: Path, state: str) -> TestClient:
    settings = ServiceSettings(
        data=store_dir,
        models=served / "models",
        index=served / "index",
        state=state,
        api_key=KEY,
        watch_seconds=0,
    )
    return TestClient(create_app(settings))


def index_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def found(client: TestClient, query: str) -> list[str]:
    response = client.get("/search", params={"q": query})
    assert response.status_code == 200, response.text
    return [hit["item_id"] for hit in response.json()["hits"]]


def test_a_catalogue_change_on_one_worker_is_seen_by_the_others(served, store_dir, state):
    before = index_digest(served / "index")
    with worker(served, store_dir, state) as a, worker(served, store_dir, state) as b:
        assert a.put("/items", json=[NEW_ITEM], headers=ADMIN).status_code == 200
        assert found(a, "quasar teapot")[0] == "zz-new"  # read-your-writes
        assert found(b, "quasar teapot")[0] == "zz-new"  # the other worker, at once
        event = {"user_id": "shopper", "type": "view", "item_id": "zz-new"}
        assert b.post("/events", json=event).status_code == 200  # b knows the item
        ready = b.get("/health/ready").json()
        assert ready["changes_applied"] == 1 and ready["changes_behind"] == 0
        assert a.get("/health/ready").json()["replica"] != ready["replica"]

        assert b.delete("/items/zz-new", headers=ADMIN).json() == {
            "item_id": "zz-new",
            "deleted": True,
        }
        assert "zz-new" not in found(a, "quasar teapot")
        assert a.post("/events", json=event).status_code == 404
        assert b.delete("/items/zz-new", headers=ADMIN).json()["deleted"] is False
    assert index_digest(served / "index") == before  # the started-with index is never written


def test_a_new_worker_catches_up_from_the_log(served, store_dir, state):
    with worker(served, store_dir, state) as a:
        a.put("/items", json=[NEW_ITEM], headers=ADMIN)
        renamed = {**NEW_ITEM, "title": "Nebula kettle"}
        a.put("/items", json=[renamed], headers=ADMIN)
    with worker(served, store_dir, state) as late:
        assert found(late, "nebula kettle")[0] == "zz-new"
        assert "zz-new" not in found(late, "quasar")
        assert late.get("/health/ready").json()["changes_applied"] == 2


def test_a_withdrawn_item_is_never_recommended_on_any_worker(served, store_dir, state, store):
    popular = store.interactions["item"].value_counts().index[0]
    item_id = str(store.items["item_id"].iloc[popular])
    with worker(served, store_dir, state) as a, worker(served, store_dir, state) as b:
        shown = [i["item_id"] for i in b.get("/recommendations", params={"k": 20}).json()["items"]]
        assert item_id in shown
        assert a.delete(f"/items/{item_id}", headers=ADMIN).json()["deleted"] is True
        for client in (a, b):
            shown = client.get("/recommendations", params={"k": 20}).json()["items"]
            assert item_id not in [i["item_id"] for i in shown] and len(shown) == 20
            assert client.get(f"/items/{item_id}/similar").status_code == 404
            other = str(store.items["item_id"].iloc[(popular + 1) % store.n_items])
            similar = client.get(f"/items/{other}/similar", params={"k": 5}).json()["items"]
            assert item_id not in [i["item_id"] for i in similar]


def test_a_deleted_user_leaves_nothing_behind_on_any_worker_or_in_any_file(
    served, store_dir, state, store, tmp_path, raw_store
):
    data = tmp_path / "data"
    shutil.copytree(store_dir, data)
    index = tmp_path / "index"
    shutil.copytree(served / "index", index)
    models = tmp_path / "models"
    shutil.copytree(served / "models", models)
    counts = store.events["user"].value_counts()
    row = counts.index[0]
    user_id = str(store.users["user_id"].iloc[row])
    settings = ServiceSettings(data=data, models=models, index=index, state=state,
                               api_key=KEY, watch_seconds=0)  # fmt: skip
    bundle = ModelBundle(models / "v0001", Dataset.load(data))
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        precompute(bundle, a.app.state.service.store, tmp_path / "batch", k=20)
        reasons = [i["reason"] for i in b.get(f"/recommendations/{user_id}").json()["items"]]
        assert any(r.startswith("because you") for r in reasons)
        a.post("/events", json={"user_id": user_id, "type": "view",
                                "item_id": str(store.items["item_id"].iloc[0])})  # fmt: skip
        response = a.delete(f"/users/{user_id}", headers=ADMIN)
        assert response.status_code == 200
        answer = response.json()
        assert answer["events_deleted"] >= 1
        assert answer["files"][str(data / "events.parquet")] == counts.iloc[0]
        where = [data / "events.parquet", data / "users.parquet", index / "profiles.parquet",
                 tmp_path / "batch", models / "v0001" / "arrays.safetensors"]  # fmt: skip
        assert {str(p) for p in where} <= set(answer["files"])
        for client in (a, b):
            items = client.get(f"/recommendations/{user_id}").json()["items"]
            assert not any(i["reason"].startswith("because you") for i in items)
            service = client.app.state.service
            assert service.engine.profiles.recent(user_id) is None
            assert service.store.recent(user_id) == [] and service.store.batch(user_id) is None
            assert all(e.user_id != user_id for _, e in service.store.events(limit=10**6))
        again = a.delete(f"/users/{user_id}", headers=ADMIN).json()
        assert again["events_deleted"] == 0 and again["files"] == {}
    # Every file, and what the next training run reads.
    for folder in (data, index, tmp_path / "batch"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".faiss":
                assert user_id.encode() not in path.read_bytes(), path
    retrained = Dataset.load(data)
    assert user_id not in set(retrained.users["user_id"])
    assert len(retrained.events) == len(store.events) - counts.iloc[0]
    assert user_hash(user_id) in tombstones(data)
    saved = load_model(models / "v0001")
    assert saved.user_items_[row].nnz == 0 and bundle.model.user_items_[row].nnz > 0
    batch = pd.concat(pd.read_parquet(p) for p in (tmp_path / "batch").glob("part-*.parquet"))
    assert user_id not in set(batch["user_id"])
    # The source files read again, into the same folder or another: still erased.
    for out, erased in ((data, set()), (tmp_path / "elsewhere", read_tombstones(data))):
        report = ingest("parquet", [raw_store], out, progress=False, tombstones=erased)
        assert report["quarantined"]["erased_user"] > 0
        for path in out.rglob("*"):
            assert not path.is_file() or user_id.encode() not in path.read_bytes(), path
        assert user_hash(user_id) in read_tombstones(out)
    assert len(Dataset.load(tmp_path / "elsewhere").events) == len(retrained.events)


def test_a_broken_newest_version_is_refused_by_reload_and_the_old_one_serves(
    served, store_dir, state, tmp_path
):
    models = tmp_path / "models"
    models.mkdir()
    (models / "v0001").symlink_to(served / "models" / "v0001", target_is_directory=True)
    settings = ServiceSettings(
        data=store_dir, models=models, state=state, api_key=KEY, watch_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        half = models / "v0002"
        half.mkdir()
        (half / "model.json").write_text('{"name": "itemknn", "par')  # still being written
        response = client.post("/admin/reload", headers=ADMIN)
        assert response.status_code == 409 and "v0001" in response.json()["detail"]
        assert client.get("/recommendations").json()["model_version"] == "v0001"


def test_upserts_replayed_in_one_batch_keep_each_ids_last_version(served, store_dir, state):
    with worker(served, store_dir, state) as a:
        for n in range(3):
            a.put("/items", json=[{**NEW_ITEM, "title": f"Version {n} gadget"}], headers=ADMIN)
        a.delete("/items/zz-new", headers=ADMIN)
        a.put("/items", json=[{**NEW_ITEM, "title": "Final flask"}], headers=ADMIN)
    with worker(served, store_dir, state) as late:
        catalog = late.app.state.service.engine.catalog
        live = catalog.items.iloc[catalog.live_rows]
        rows = live[live["item_id"] == "zz-new"]
        assert rows["title"].tolist() == ["Final flask"]
        assert found(late, "final flask")[0] == "zz-new"


def test_search_leans_toward_the_live_session_on_every_worker(served, store_dir, state, store):
    """The state store owns a shopper's session: a view posted to one worker
    personalizes search on the other, and no worker keeps a copy of it."""
    top = store.items["category"].str.split(" > ").str[0]
    words = store.items["title"].str.lower().str.split().explode()
    query = words.value_counts().index[0]  # a word in many categories' titles
    matching = store.items["title"].str.lower().str.split().map(lambda t: query in t)
    category = top[matching].value_counts().index[-1]  # the one it shows least of
    items = store.items["item_id"][top == category].tolist()
    with worker(served, store_dir, state) as a, worker(served, store_dir, state) as b:
        anonymous = [h["item_id"] for h in b.get("/search", params={"q": query}).json()["hits"]]
        events = [{"user_id": "newcomer", "type": "purchase", "item_id": i} for i in items[:5]]
        assert a.post("/events", json=events).status_code == 200
        params = {"q": query, "user_id": "newcomer", "per_page": 10}
        personal = [h["item_id"] for h in b.get("/search", params=params).json()["hits"]]
        share = sum(i in items for i in personal), sum(i in items for i in anonymous[:10])
        assert share[0] >= share[1] and personal != anonymous[:10]
        assert b.app.state.service.engine.profiles.recent("newcomer") is None


def test_a_change_that_fails_on_a_worker_is_retried_never_skipped(
    served, store_dir, state, store, tmp_path, monkeypatch
):
    data, models = tmp_path / "data", tmp_path / "models"  # a deletion erases from both
    shutil.copytree(store_dir, data)
    shutil.copytree(served / "models", models)
    settings = ServiceSettings(data=data, models=models, index=served / "index",
                               state=state, api_key=KEY, watch_seconds=0)  # fmt: skip
    user_id = str(store.users["user_id"].iloc[store.events["user"].value_counts().index[0]])
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        service = b.app.state.service
        real = service.erase_files

        def broken(user: str) -> dict:
            raise OSError("disk full")

        monkeypatch.setattr(service, "erase_files", broken)
        assert a.delete(f"/users/{user_id}", headers=ADMIN).status_code == 200
        assert a.put("/items", json=[NEW_ITEM], headers=ADMIN).status_code == 200
        found(b, "quasar teapot")  # b tries, fails, and stays at the failed entry
        ready = b.get("/health/ready")
        assert ready.status_code == 503 and "disk full" in ready.json()["detail"]
        assert "zz-new" not in found(b, "quasar teapot")  # nothing after it either
        monkeypatch.setattr(service, "erase_files", real)
        service.changes.catch_up(retry=True)  # what b's follower does every second
        assert b.get("/health/ready").json()["changes_behind"] == 0
        assert found(b, "quasar teapot")[0] == "zz-new"
        assert service.engine.profiles.recent(user_id) is None


def test_a_change_log_that_went_back_is_refused_not_ignored(served, store_dir, tmp_path):
    state = str(tmp_path / "state.db")
    with worker(served, store_dir, state) as a:
        a.put("/items", json=[NEW_ITEM], headers=ADMIN)
        a.put("/items", json=[{**NEW_ITEM, "item_id": "zz-2"}], headers=ADMIN)
        import sqlite3

        with sqlite3.connect(state) as db:  # the store emptied behind the service's back
            db.execute("DELETE FROM changes")
        response = a.put("/items", json=[{**NEW_ITEM, "item_id": "zz-3"}], headers=ADMIN)
        assert response.status_code == 503 and "went back" in response.json()["detail"]
        assert a.get("/health/ready").status_code == 503


def test_a_broken_newest_version_neither_stops_a_start_nor_keeps_an_erased_user(
    served, store_dir, state, store, tmp_path
):
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(store_dir, data)
    shutil.copytree(served / "models", models)
    (models / "v0002").mkdir()
    (models / "v0002" / "model.json").write_text('{"name": "itemknn", "par')  # being written
    settings = ServiceSettings(data=data, models=models, state=state, api_key=KEY,
                               watch_seconds=0)  # fmt: skip
    row = int(store.events["user"].value_counts().index[0])
    user_id = str(store.users["user_id"].iloc[row])
    with TestClient(create_app(settings)) as client:
        assert client.get("/recommendations").json()["model_version"] == "v0001"
        assert client.delete(f"/users/{user_id}", headers=ADMIN).status_code == 200
        assert load_model(models / "v0001").user_items_[row].nnz == 0
        shutil.rmtree(models / "v0002")  # the training run finishes: a model that knew the user
        shutil.copytree(served / "models" / "v0001", models / "v0002")
        assert client.post("/admin/reload", headers=ADMIN).json()["model_version"] == "v0002"
        assert load_model(models / "v0002").user_items_[row].nnz == 0


@pytest.fixture(scope="module")
def semantic_index(store, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("semantic")
    build_index(store.items.head(60), root / "index", store.source_events())
    return root / "index"


def test_a_logged_upsert_carries_its_vectors_and_replicas_index_them_as_they_are(
    served, semantic_index, store_dir, tmp_path
):
    state = str(tmp_path / "state.db")
    settings = ServiceSettings(data=store_dir, models=served / "models", index=semantic_index,
                               state=state, api_key=KEY, watch_seconds=0)  # fmt: skip
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        engine_a, engine_b = (c.app.state.service.engine for c in (a, b))
        expected = engine_a.embed(pd.DataFrame([NEW_ITEM]))["zz-new"]
        assert a.put("/items", json=[NEW_ITEM, NEW_ITEM], headers=ADMIN).status_code == 200
        (entry,) = a.app.state.service.store.changes()
        assert entry.payload["vectors"]["encoder"] == engine_b.encoder_tag
        assert entry.payload["vectors"]["ids"] == ["zz-new"]
        assert found(b, "quasar teapot")[0] == "zz-new"
        for engine in (engine_a, engine_b):
            row = engine.catalog.row_of["zz-new"]
            np.testing.assert_array_equal(engine.vectors.vectors(np.array([row]))[0], expected)
    assert b"zz-new" not in (semantic_index / "catalog.parquet").read_bytes()  # the original


def test_an_item_added_through_the_api_has_neighbours_at_once_on_every_worker(
    served, semantic_index, store_dir, tmp_path
):
    """The model has never seen it: its neighbours are the index's nearest by text."""
    teapot = {**NEW_ITEM, "title": "Ceramic teapot", "category": "Home & Kitchen > Teapots"}
    settings = ServiceSettings(data=store_dir, models=served / "models", index=semantic_index,
                               state=str(tmp_path / "state.db"), api_key=KEY,
                               watch_seconds=0)  # fmt: skip
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        assert a.get("/items/zz-new/similar").status_code == 404
        assert a.put("/items", json=[teapot], headers=ADMIN).status_code == 200
        for client in (a, b):
            answer = client.get("/items/zz-new/similar", params={"k": 5}).json()
            ids = [i["item_id"] for i in answer["items"]]
            assert len(ids) == 5 and "zz-new" not in ids
            assert all("new to the recommender" in i["reason"] for i in answer["items"])
        engine = a.app.state.service.engine
        assert ids == [h.item_id for h in engine.similar_items("zz-new", 5)]
        assert a.delete("/items/zz-new", headers=ADMIN).json()["deleted"] is True
        assert b.get("/items/zz-new/similar").status_code == 404


def test_a_new_item_joins_the_lists_of_shoppers_who_looked_at_its_like(
    served, semantic_index, store_dir, store, tmp_path
):
    """The model cannot score it; what the shopper did lately can, by text."""
    first = store.items.iloc[0]
    twin = {"item_id": "zz-twin", "title": f"{first['title']} (new edition)",
            "category": str(first["category"]), "price": 10.0}  # fmt: skip
    settings = ServiceSettings(data=store_dir, models=served / "models", index=semantic_index,
                               state=str(tmp_path / "state.db"), api_key=KEY,
                               watch_seconds=0)  # fmt: skip
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        looked = {"user_id": "newcomer", "type": "view", "item_id": str(first["item_id"])}
        assert a.post("/events", json=looked).status_code == 200
        assert a.put("/items", json=[twin, NEW_ITEM], headers=ADMIN).status_code == 200
        for client in (a, b):
            items = client.get("/recommendations/newcomer", params={"k": 5}).json()["items"]
            assert [i["item_id"] for i in items].count("zz-twin") == 1 and len(items) == 5
            assert "zz-new" not in [i["item_id"] for i in items]  # a teapot is like nothing here
            assert next(i for i in items if i["item_id"] == "zz-twin")["reason"].startswith("new")
        stranger = b.get("/recommendations/nobody-at-all", params={"k": 5}).json()["items"]
        assert "zz-twin" not in [i["item_id"] for i in stranger]  # nothing to be like
        in_category = b.get("/recommendations/newcomer", params={"k": 5, "category": "Nowhere"})
        assert "zz-twin" not in [i["item_id"] for i in in_category.json()["items"]]


def test_a_workers_index_copy_leaves_what_serving_never_reads(tmp_path):
    from shopsense.search.finetune import CROSS_FIT
    from shopsense.serving.replica import private_index_copy, remove_copy

    index = tmp_path / "index"
    for kept in ("settings.json", "encoder/model.safetensors"):
        (index / kept).parent.mkdir(parents=True, exist_ok=True)
        (index / kept).write_text("x")
    for left in ("embeddings/a.npy", f"encoder/{CROSS_FIT}/encoder-0/model.safetensors"):
        (index / left).parent.mkdir(parents=True, exist_ok=True)
        (index / left).write_text("x")
    copy = private_index_copy(index)
    try:
        copied = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
        assert copied == {"settings.json", "encoder/model.safetensors"}
    finally:
        remove_copy(copy)
