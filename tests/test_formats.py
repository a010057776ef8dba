"""Named formats, each on the real copy in ../shared/datasets (or a small fixture
where the shared folder has no copy: MovieLens raw files and RetailRocket)."""

import json

import pytest

from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest

pytestmark = pytest.mark.real_data


def accounted(report):
    total = report["accepted"] + report["duplicates"] + sum(report["quarantined"].values())
    return total == report["input_rows"]


def test_taobao_reports_rows_outside_the_window_and_the_cut_line(real_data, tmp_path):
    path = real_data("taobao-userbehavior-sample") / "UserBehavior.csv"
    report = ingest("taobao", [path], tmp_path / "tb", progress=False)
    assert accounted(report)
    assert report["input_rows"] == 84_476
    assert report["quarantined"] == {"malformed_line": 1, "timestamp_out_of_range": 35}
    ds = Dataset.load(tmp_path / "tb")
    assert ds.n_users == 815
    counts = ds.events["type"].astype(str).value_counts()
    assert set(counts.index) == {"view", "cart", "fav", "purchase"}
    assert counts["view"] > counts["purchase"]
    # Items carry the category seen in the events.
    assert ds.items["category"].notna().all()


def test_amazon_beauty_with_titles(real_data, tmp_path):
    report = ingest("amazon", [real_data("amazon-beauty")], tmp_path / "b", progress=False)
    assert accounted(report) and report["accepted"] == 198_215
    ds = Dataset.load(tmp_path / "b")
    assert (ds.n_users, ds.n_items) == (22_332, 12_086)
    assert not ds.items["title"].str.contains("&amp;", regex=False).any()


def test_s3rec_sequences_keep_order_as_time(real_data, tmp_path):
    report = ingest("sequences", [real_data("amazon-beauty-s3rec")], tmp_path / "s", progress=False)
    assert accounted(report) and report["accepted"] == 198_502
    ds = Dataset.load(tmp_path / "s")
    assert ds.time_is_order and (ds.n_users, ds.n_items) == (22_363, 12_101)
    first = ds.interactions[ds.interactions["user"] == ds.user_index("1")]
    assert ds.item_ids(first["item"].to_numpy()).tolist() == ["1", "2", "3", "4", "5"]


def test_recbole_atomic_files(real_data, tmp_path):
    report = ingest("recbole", [real_data("ml-100k")], tmp_path / "ml", progress=False)
    assert accounted(report) and report["accepted"] == 100_000
    ds = Dataset.load(tmp_path / "ml")
    assert (ds.n_users, ds.n_items) == (943, 1682)
    toy = ds.items.iloc[ds.item_index("1")]
    assert toy["title"] == "Toy Story" and toy["category"] == "Animation"
    assert json.loads(ds.users["attributes"].iloc[ds.user_index("1")])["occupation"] == "technician"
    assert ds.events["value"].between(1, 5).all()


def test_diginetica_sessions_stand_for_anonymous_users(real_data, tmp_path):
    report = ingest("diginetica", [real_data("diginetica-sample")], tmp_path / "d", progress=False)
    assert accounted(report) and report["accepted"] > 12_000
    ds = Dataset.load(tmp_path / "d")
    assert ds.users["user_id"].str.startswith("session:").any()
    assert ds.events["timestamp"].min() > 1_400_000_000


def test_homedepot_catalog(real_data, tmp_path):
    report = ingest("homedepot", [real_data("homedepot-search")], tmp_path / "h", progress=False)
    assert report["items"]["accepted"] == 54_667 and report["input_rows"] == 0
    ds = Dataset.load(tmp_path / "h")
    assert ds.items["title"].iloc[ds.item_index("100001")] == "Simpson Strong-Tie 12-Gauge Angle"
    assert not ds.items["title"].str.contains("&#39;|&amp;|&quot;").any()  # read as ' & "
    assert ds.items["title"].str.contains("'", regex=False).any()


ML100K_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n"
ML100K_ITEMS = (
    "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "20|Caf\xe9 Society (1995)|01-Jan-1995||http://y|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
)
ML100K_USERS = "1|24|M|technician|85711\n2|53|F|other|94043\n"


def test_movielens_100k_raw_files(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(ML100K_DATA)
    (folder / "u.item").write_bytes(ML100K_ITEMS.encode("latin-1"))
    (folder / "u.user").write_text(ML100K_USERS)
    report = ingest("movielens", [folder], tmp_path / "out", progress=False)
    assert report["accepted"] == 3 and accounted(report)
    ds = Dataset.load(tmp_path / "out")
    assert ds.items["title"].tolist() == ["Toy Story (1995)", "Café Society (1995)"]
    assert ds.items["category"].tolist() == ["Animation", "Drama"]
    genres = json.loads(ds.items["attributes"].iloc[0])["genres"]
    assert genres == ["Animation", "Children's", "Comedy"]
    assert ds.events["type"].astype(str).unique().tolist() == ["view"]


def test_movielens_1m_raw_files(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)"
        "::Animation|Children's|Musical\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n")
    report = ingest("movielens", [folder], tmp_path / "out", progress=False)
    assert report["accepted"] == 2 and accounted(report)
    ds = Dataset.load(tmp_path / "out")
    assert ds.items["category"].tolist() == ["Drama", "Animation"]
    assert json.loads(ds.users["attributes"].iloc[0])["gender"] == "F"


def test_retailrocket_events(tmp_path):
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433223236124,257597,addtocart,355908,\n"
        "1433224214164,257597,transaction,355908,4000\n"
        "1433221955914,992329,refund,248676,\n"
    )
    report = ingest("retailrocket", [tmp_path], tmp_path / "out", progress=False)
    assert report["accepted"] == 3 and report["quarantined"] == {"unknown_event_type": 1}
    ds = Dataset.load(tmp_path / "out")
    assert ds.events["type"].astype(str).tolist() == ["view", "cart", "purchase"]
    assert ds.events["timestamp"].iloc[0] == 1433221332
    assert json.loads(ds.events["context"].iloc[2]) == {"transaction_id": "4000"}
