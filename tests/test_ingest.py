"""Cleaning and ingestion: every row accounted for, nothing lost silently."""

import json

import pandas as pd
import pytest

from shopsense.data.dataset import Dataset
from shopsense.data.formats import ReadOptions
from shopsense.data.ingest import QUARANTINE_FILE, ingest
from shopsense.errors import ShopsenseError

DIRTY_EVENTS = """user_id,item_id,type,timestamp,session_id
u1,i1,view,1700000000,s1
u1,i1,view,1700000000,s1
u1,i2,cart,1700000100,s1
u2,i1,purchase,1700000200,s2
,i1,view,1700000300,s3
u3,,view,1700000300,s3
u3,i1,teleport,1700000300,s3
u3,i1,view,yesterday,s3
u3,i1,view,,s3
u3,i1,view,100,s3
u3,i9,view,1700000400,s3
u3,,search,1700000500,s3
u4,i2,click,1700000600,s4,extra,fields
u4,i2,fav,1700000700,s4
"""

DIRTY_ITEMS = """item_id,title,price,brand
i1,Red shoe,19.99,Acme
i2,Blue shoe,21.50,Acme
i2,Blue shoe,21.50,Acme
i3,Broken,-5,Acme
i4,Other,abc,Acme
,No id,1.0,Acme
i1,Red shoe again,18.00,Acme
"""


@pytest.fixture()
def dirty_folder(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "events.csv").write_text(DIRTY_EVENTS)
    (folder / "items.csv").write_text(DIRTY_ITEMS)
    return folder


def check_accounting(part):
    total = part["accepted"] + part["duplicates"] + sum(part["quarantined"].values())
    assert total == part["input_rows"]


def test_every_rejected_row_has_a_reason(dirty_folder, tmp_path):
    out = tmp_path / "out"
    report = ingest("csv", [dirty_folder], out, progress=False)
    check_accounting(report)
    check_accounting(report["items"])
    assert report["input_rows"] == 14
    assert report["duplicates"] == 1
    assert report["accepted"] == 5  # rows 1, 3, 4, the item-less search, the fav
    assert report["quarantined"] == {
        "bad_timestamp": 1,
        "malformed_line": 1,
        "missing_item_id": 1,
        "missing_timestamp": 1,
        "missing_user_id": 1,
        "timestamp_out_of_range": 1,
        "unknown_event_type": 1,
        "unknown_item": 1,
    }
    assert report["items"]["quarantined"] == {
        "bad_price": 1,
        "duplicate_item_id": 1,
        "missing_item_id": 1,
        "negative_price": 1,
    }
    assert report["items"]["duplicates"] == 1
    lines = [json.loads(x) for x in (out / QUARANTINE_FILE).read_text().splitlines()]
    assert len(lines) == sum(report["quarantined"].values()) + sum(
        report["items"]["quarantined"].values()
    )
    reasons = {(x["table"], x["reason"]) for x in lines}
    assert ("events", "unknown_event_type") in reasons
    teleport = next(x for x in lines if x["reason"] == "unknown_event_type")
    assert teleport["row"]["type"] == "teleport" and teleport["row"]["user_id"] == "u3"
    assert json.loads((out / "report.json").read_text()) == report


def test_ingested_dataset_keeps_source_ids(dirty_folder, tmp_path):
    out = tmp_path / "out"
    ingest("csv", [dirty_folder], out, progress=False)
    ds = Dataset.load(out)
    assert ds.items["item_id"].tolist() == ["i1", "i2"]
    assert ds.items["price"].tolist() == [19.99, 21.5]
    assert ds.user_index("u2") == ds.users["user_id"].tolist().index("u2")
    assert set(ds.events["type"].astype(str)) == {"view", "cart", "purchase", "search", "fav"}
    search = ds.events[ds.events["type"] == "search"]
    assert (search["item"] == -1).all()
    with pytest.raises(ShopsenseError):
        ds.user_index("nobody")


def test_duplicates_across_chunk_boundaries(tmp_path):
    # 6,000 distinct rows in 12 chunks, then each again in 12 more: duplicates are
    # found across chunks and across more dedup segments than are kept unmerged.
    rows = "\n".join(f"u{j % 13},i{j % 17},view,{1700000000 + j}" for j in range(6000))
    (tmp_path / "events.csv").write_text("user_id,item_id,type,timestamp\n" + rows + "\n" + rows)
    report = ingest(
        "csv",
        [tmp_path / "events.csv"],
        tmp_path / "out",
        ReadOptions(chunk_rows=500),
        progress=False,
    )
    assert (report["accepted"], report["duplicates"]) == (6000, 6000)
    check_accounting(report)


def test_chunks_have_the_asked_size(tmp_path):
    from shopsense.data.sources import read_delimited

    (tmp_path / "e.csv").write_text("a,b\n" + "\n".join(f"{i},{i}" for i in range(2500)) + "\n")
    chunks = read_delimited(tmp_path / "e.csv", ",", chunk_rows=1000)
    sizes = [(len(c.frame), c.records[0], c.records[-1]) for c in chunks]
    assert sizes == [(1000, 2, 1001), (1000, 1002, 2001), (500, 2002, 2501)]  # header: line 1


def test_column_mapping_and_type_map(tmp_path):
    (tmp_path / "log.tsv").write_text(
        "visitor\tsku\tkind\twhen\n"
        "a\tx\tpv\t2024-01-02T03:04:05Z\n"
        "b\tx\tbuy\t2024-01-03T00:00:00Z\n"
    )
    opts = ReadOptions(
        mapping={"user_id": "visitor", "item_id": "sku", "type": "kind", "timestamp": "when"},
        type_map={"view": "pv", "purchase": "buy"},
        timestamp_unit="iso",
    )
    report = ingest("tsv", [tmp_path / "log.tsv"], tmp_path / "out", opts, progress=False)
    assert report["accepted"] == 2
    ds = Dataset.load(tmp_path / "out")
    assert ds.events["type"].astype(str).tolist() == ["view", "purchase"]
    assert ds.events["timestamp"].tolist()[0] == int(
        pd.Timestamp("2024-01-02T03:04:05Z").timestamp()
    )


def test_unknown_mapped_column_is_a_clear_error(tmp_path):
    (tmp_path / "events.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ShopsenseError, match="not found"):
        ingest(
            "csv",
            [tmp_path / "events.csv"],
            tmp_path / "out",
            ReadOptions(mapping={"user_id": "nope"}),
            progress=False,
        )


def test_jsonl_and_parquet_generic_formats(tmp_path):
    lines = [
        {
            "user_id": "u1",
            "item_id": "i1",
            "type": "view",
            "timestamp": 1700000000,
            "context": {"device": "mobile"},
        },
        {
            "user_id": "u1",
            "item_id": "i2",
            "type": "purchase",
            "timestamp": 1700000001,
            "value": 9.5,
        },
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    report = ingest("jsonl", [tmp_path / "events.jsonl"], tmp_path / "a", progress=False)
    assert report["accepted"] == 2 and report["quarantined"] == {"malformed_line": 1}
    ds = Dataset.load(tmp_path / "a")
    assert json.loads(ds.events["context"].iloc[0]) == {"device": "mobile"}
    assert ds.events["value"].iloc[1] == 9.5
    ds.events.assign(type=ds.events["type"].astype(str)).rename(
        columns={"user": "user_id", "item": "item_id"}
    ).to_parquet(tmp_path / "events.parquet")
    report = ingest("parquet", [tmp_path / "events.parquet"], tmp_path / "b", progress=False)
    assert report["accepted"] == 2


def test_k_core_is_reported_as_quarantine(store_dir, raw_store, tmp_path):
    plain = json.loads((store_dir / "report.json").read_text())
    report = ingest("parquet", [raw_store], tmp_path / "k", k_core=5, progress=False)
    check_accounting(report)
    assert report["quarantined"]["k_core"] > 0
    assert report["accepted"] + report["quarantined"]["k_core"] == plain["accepted"]
    ds = Dataset.load(tmp_path / "k")
    inter = ds.interactions
    assert inter.groupby("user").size().min() >= 5
    assert inter.groupby("item").size().min() >= 5
    assert len(ds.events) == report["accepted"]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(ShopsenseError, match="no such file"):
        ingest("csv", [tmp_path / "nothing.csv"], tmp_path / "out", progress=False)


def test_id_map_matches_a_dictionary_across_many_chunks():
    import numpy as np

    from shopsense.data.ingest import IdMap

    rng = np.random.default_rng(0)
    id_map, reference = IdMap(["seed"]), {"seed": 0}
    for _ in range(30):  # more chunks than segments, so merges happen
        chunk = pd.Series([f"id{x}" for x in rng.integers(0, 500, 200)])
        for value in chunk:
            reference.setdefault(value, len(reference))
        np.testing.assert_array_equal(id_map.encode(chunk), [reference[v] for v in chunk])
    assert id_map.ids == list(reference) and len(id_map) == len(reference)


def test_a_file_of_bad_lines_is_read_in_bounded_chunks(tmp_path):
    from shopsense.data.sources import read_delimited, read_jsonl

    (tmp_path / "e.csv").write_text("a,b\n" + "bad\n" * 2500)
    chunks = list(read_delimited(tmp_path / "e.csv", ",", chunk_rows=1000))
    assert [len(c.bad_lines) for c in chunks] == [1000, 1000, 500]
    assert chunks[1].bad_lines[0].record == 1002  # the header is line 1
    (tmp_path / "e.jsonl").write_text("[]\n" * 2500)
    assert [len(c.bad_lines) for c in read_jsonl(tmp_path / "e.jsonl", 1000)] == [1000, 1000, 500]


def test_chunk_rows_must_be_positive():
    with pytest.raises(ShopsenseError, match="chunk_rows"):
        ReadOptions(chunk_rows=0)
