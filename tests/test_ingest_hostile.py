"""Hostile input through ``shopsense ingest``: every file here once hung it,
ended in a traceback, left a partial dataset, dropped rows silently or gave
inexact record numbers. Each must finish, balance its report, and name the
file and line of every rejected record.

Cases that used to loop forever run the real command in a subprocess with a
timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from shopsense.data.dataset import Dataset
from shopsense.data.formats import ReadOptions
from shopsense.data.ingest import QUARANTINE_FILE, REPORT_FILE, ingest
from shopsense.errors import ShopsenseError

HEADER = b"user_id,item_id,type,timestamp\n"
GOOD_ROW = b"u1,i1,view,1700000000\n"


def shopsense(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it; a hang fails the test after ``timeout``."""
    return subprocess.run(
        [sys.executable, "-m", "shopsense", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def strict_json(line: str) -> dict:
    """JSON as any parser reads it: no NaN or Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def quarantine_of(out: Path) -> list[dict]:
    return [strict_json(line) for line in (out / QUARANTINE_FILE).read_text().splitlines()]


def check_balanced(out: Path) -> dict:
    """report.json adds up, and quarantine.jsonl holds one line per quarantined
    record, each with its file, a 1-based record number and a reason."""
    report = json.loads((out / REPORT_FILE).read_text())
    tables = {"events": report, **{t: report[t] for t in ("items", "users") if t in report}}
    expected: Counter[tuple[str, str]] = Counter()
    for table, part in tables.items():
        quarantined = sum(part["quarantined"].values())
        assert part["accepted"] + part["duplicates"] + quarantined == part["input_rows"]
        expected.update({(table, r): n for r, n in part["quarantined"].items()})
    lines = quarantine_of(out)
    assert Counter((x["table"], x["reason"]) for x in lines) == expected
    for line in lines:
        assert line["file"] and isinstance(line["record"], int) and line["record"] >= 1, line
    return report


def ingest_cli(tmp_path: Path, fmt: str, *paths: Path) -> tuple[dict, list[dict]]:
    out = tmp_path / "out"
    done = shopsense("ingest", "--format", fmt, "--out", out, *paths)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return check_balanced(out), quarantine_of(out)


def records(lines: list[dict], reason: str) -> list[int]:
    return sorted(x["record"] for x in lines if x["reason"] == reason)


# ---------------------------------------------------------------- used to hang


@pytest.mark.parametrize("header", [HEADER, HEADER.rstrip()], ids=["newline", "no-newline"])
def test_header_only_events_give_an_empty_dataset(tmp_path, header):
    (tmp_path / "events.csv").write_bytes(header)
    report, lines = ingest_cli(tmp_path, "csv", tmp_path / "events.csv")
    assert (report["input_rows"], report["accepted"], lines) == (0, 0, [])
    ds = Dataset.load(tmp_path / "out")
    assert len(ds.events) == 0 and len(ds.items) == 0


def test_all_malformed_events_are_quarantined_with_their_lines(tmp_path):
    (tmp_path / "events.csv").write_bytes(HEADER + b"a,b\nc\nd,e,f,g,h\n")
    report, lines = ingest_cli(tmp_path, "csv", tmp_path / "events.csv")
    assert report["quarantined"] == {"malformed_line": 3} and report["accepted"] == 0
    assert records(lines, "malformed_line") == [2, 3, 4]
    assert lines[0]["row"] == {"text": "a,b"}


def test_header_only_catalog(tmp_path):
    (tmp_path / "items.csv").write_bytes(b"item_id,title,price\n")
    (tmp_path / "events.csv").write_bytes(HEADER + GOOD_ROW)
    report, _ = ingest_cli(tmp_path, "csv", tmp_path)
    assert report["items"]["input_rows"] == 0
    assert report["quarantined"] == {"unknown_item": 1}  # the catalog holds no i1


# ------------------------------------------------------------------- encodings


def test_byte_order_mark_keeps_every_row(tmp_path):
    (tmp_path / "events.csv").write_bytes(b"\xef\xbb\xbf" + HEADER + GOOD_ROW)
    (tmp_path / "items.csv").write_bytes(b"\xef\xbb\xbfitem_id,title\ni1,Shoe\n")
    report = ingest("csv", [tmp_path], tmp_path / "out", progress=False)
    assert (report["accepted"], report["items"]["accepted"]) == (1, 1)
    lines = [b"\xef\xbb\xbf" + json.dumps({"user_id": "u1", "item_id": "i1"}).encode()]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    report = ingest(
        "jsonl",
        [tmp_path / "events.jsonl"],
        tmp_path / "j",
        ReadOptions(default_type="view"),
        progress=False,
    )
    assert report["quarantined"] == {"missing_timestamp": 1}  # read, not malformed


@pytest.mark.parametrize("padding_rows", [0, 2000], ids=["first-8KB", "later"])
def test_invalid_utf8_in_csv_quarantines_that_line(tmp_path, padding_rows):
    padding = b"".join(b"u%d,i1,view,%d\n" % (i, 1700000000 + i) for i in range(padding_rows))
    body = HEADER + GOOD_ROW + b"u\xff2,i1,view,1700000001\n" + padding + b"u3,i1,view,17\xe90\n"
    (tmp_path / "events.csv").write_bytes(body + GOOD_ROW.replace(b"u1", b"u4"))
    report, lines = ingest_cli(tmp_path, "csv", tmp_path / "events.csv")
    assert report["quarantined"] == {"invalid_utf8": 2}
    assert report["accepted"] == 2 + padding_rows
    assert records(lines, "invalid_utf8") == [3, 4 + padding_rows]
    assert "u\\xff2" in lines[0]["row"]["text"]  # the bad byte, shown as an escape


def test_csv_header_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "events.csv").write_bytes("user_id,ïtem_id\n".encode("latin-1") + GOOD_ROW)
    done = shopsense("ingest", "--format", "csv", "--out", tmp_path / "out", tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ") and "UTF-8" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("line", "reason"), [(b"i2,Shoe,extra\n", "malformed line"), (b"i\xe92,Shoe\n", "invalid utf8")]
)
def test_a_bad_catalog_line_is_a_clear_error(tmp_path, line, reason):
    (tmp_path / "items.csv").write_bytes(b"item_id,title\ni1,Shoe\n" + line)
    (tmp_path / "events.csv").write_bytes(HEADER + GOOD_ROW)
    done = shopsense("ingest", "--format", "csv", "--out", tmp_path / "out", tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: {tmp_path / 'items.csv'}, line 3: {reason}")
    assert not (tmp_path / "out").exists()


def test_invalid_utf8_in_jsonl_quarantines_that_line(tmp_path):
    good = json.dumps({"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 1.7e9})
    body = [good.encode(), b"", good.replace("u1", "u\xff").encode("latin-1"), good.encode()]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(body) + b"\n")
    report, lines = ingest_cli(tmp_path, "jsonl", tmp_path / "events.jsonl")
    assert report["quarantined"] == {"invalid_utf8": 1} and report["duplicates"] == 1
    assert records(lines, "invalid_utf8") == [3]


def test_invalid_utf8_in_sequences(tmp_path):
    (tmp_path / "seq.txt").write_bytes(b"u1 i1 i2\nu\xff i1\nu3 i2 i1\n")
    report, lines = ingest_cli(tmp_path, "sequences", tmp_path / "seq.txt")
    assert report["accepted"] == 4 and report["quarantined"] == {"invalid_utf8": 1}
    assert records(lines, "invalid_utf8") == [2]


# --------------------------------------------------------------- hostile JSON


def test_deeply_nested_and_oversized_json_lines_are_quarantined(tmp_path):
    good = {"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 1700000000}
    deep = '{"user_id": "u2", "context": ' + "[" * 100_000 + "]" * 100_000 + "}"
    nested = {**good, "user_id": "u3", "context": {"a": {"b": {"c": "d"}}}}
    body = [json.dumps(good), deep, json.dumps(nested), '{"user_id": ' + "9" * 5000 + "}"]
    (tmp_path / "events.jsonl").write_text("\n".join(body) + "\n")
    report, lines = ingest_cli(tmp_path, "jsonl", tmp_path / "events.jsonl")
    assert report["accepted"] == 2
    assert report["quarantined"] == {"malformed_line": 1, "too_deeply_nested": 1}
    assert records(lines, "too_deeply_nested") == [2]
    assert records(lines, "malformed_line") == [4]


# -------------------------------------------------------------- record numbers


def test_csv_record_numbers_are_line_numbers(tmp_path):
    body = (
        HEADER
        + GOOD_ROW  # line 2
        + b"\n"  # 3: blank, not a record
        + b"bad\n"  # 4
        + b'u2,i1,"multi\nline",1700000000\n'  # 5-6: one record over two lines
        + b",i1,view,1700000000\n"  # 7
        + b"u3,i1,view,yesterday\n"  # 8
    )
    (tmp_path / "events.csv").write_bytes(body)
    report, lines = ingest_cli(tmp_path, "csv", tmp_path / "events.csv")
    assert report["input_rows"] == 5 and report["accepted"] == 1
    found = {x["reason"]: x["record"] for x in lines}
    assert found == {
        "malformed_line": 4,
        "unknown_event_type": 5,
        "missing_user_id": 7,
        "bad_timestamp": 8,
    }
    assert {x["file"] for x in lines} == {str(tmp_path / "events.csv")}


def test_record_numbers_stay_exact_across_chunks(tmp_path):
    rows = [b"u%d,i1,view,%d\n" % (i, 1700000000 + i) for i in range(2500)]
    rows[1234] = b"broken\n"  # line 1236
    rows[2100] = b"u9,i1,view,never\n"  # line 2102
    path = tmp_path / "events.csv"
    path.write_bytes(HEADER + b"".join(rows))
    report = ingest("csv", [path], tmp_path / "out", ReadOptions(chunk_rows=1000), progress=False)
    assert report["input_rows"] == 2500
    lines = quarantine_of(tmp_path / "out")
    assert {x["reason"]: x["record"] for x in lines} == {
        "malformed_line": 1236,
        "bad_timestamp": 2102,
    }


def test_jsonl_record_numbers_are_line_numbers(tmp_path):
    row = {"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 1700000000}
    body = [json.dumps(row), "", "not json", json.dumps({**row, "type": "teleport"}), "[1]"]
    (tmp_path / "events.jsonl").write_text("\n".join(body) + "\n")
    _, lines = ingest_cli(tmp_path, "jsonl", tmp_path / "events.jsonl")
    assert records(lines, "malformed_line") == [3, 5]
    assert records(lines, "unknown_event_type") == [4]


def test_parquet_record_numbers_are_row_numbers(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["u1", None, "u3", "u4"],
            "item_id": "i1",
            "type": "view",
            "timestamp": 1700000000,
            "value": [1.0, 2.0, 3.0, float("inf")],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    _, lines = ingest_cli(tmp_path, "parquet", tmp_path / "events.parquet")
    assert records(lines, "missing_user_id") == [2]
    assert records(lines, "bad_value") == [4]
    assert lines[-1]["row"]["value"] == "inf"  # quarantine.jsonl stays strict JSON


def test_catalog_record_numbers_name_their_file_and_line(tmp_path):
    (tmp_path / "items.csv").write_bytes(b"item_id,title\ni1,Shoe\n\ni1,Other shoe\n,No id\n")
    (tmp_path / "events.csv").write_bytes(HEADER + GOOD_ROW)
    _, lines = ingest_cli(tmp_path, "csv", tmp_path)
    found = {x["reason"]: (Path(x["file"]).name, x["record"]) for x in lines}
    assert found == {"duplicate_item_id": ("items.csv", 4), "missing_item_id": ("items.csv", 5)}
    assert "_record" not in lines[0]["row"] and "_file" not in lines[0]["row"]


def test_k_core_quarantine_names_the_source_line(tmp_path):
    pairs = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i1")]
    rows = "".join(f"{u},{i},view,{1700000000 + n}\n" for n, (u, i) in enumerate(pairs))
    (tmp_path / "events.csv").write_bytes(HEADER + rows.encode())  # u3's line is line 6
    ingest("csv", [tmp_path / "events.csv"], tmp_path / "out", k_core=2, progress=False)
    lines = quarantine_of(tmp_path / "out")
    check_balanced(tmp_path / "out")
    assert {(x["file"], x["record"]) for x in lines} == {(str(tmp_path / "events.csv"), 6)}


# ---------------------------------------------------------- non-finite numbers


def test_non_finite_prices_are_bad_prices_and_nan_is_a_missing_price(tmp_path):
    prices = ["inf", "-inf", "1e400", "Infinity", "nan", "2.5"]
    items = "item_id,price\n" + "".join(f"i{n},{p}\n" for n, p in enumerate(prices))
    (tmp_path / "items.csv").write_text(items)
    (tmp_path / "events.csv").write_bytes(HEADER + b"u1,i5,view,1700000000\n")
    report, lines = ingest_cli(tmp_path, "csv", tmp_path)
    assert report["items"]["quarantined"] == {"bad_price": 4}
    assert records(lines, "bad_price") == [2, 3, 4, 5]
    ds = Dataset.load(tmp_path / "out")
    assert ds.items["item_id"].tolist() == ["i4", "i5"]
    assert pd.isna(ds.items["price"].iloc[0]) and ds.items["price"].iloc[1] == 2.5


def test_non_finite_timestamps_and_values_are_quarantined(tmp_path):
    (tmp_path / "events.csv").write_bytes(
        b"user_id,item_id,type,timestamp,value\n"
        b"u1,i1,view,inf,\n"
        b"u1,i1,view,1e400,\n"
        b"u1,i1,view,nan,\n"
        b"u1,i1,view,1700000000,inf\n"
        b"u1,i1,view,1700000001,1e400\n"
        b"u1,i1,view,1700000002,abc\n"
        b"u1,i1,view,1700000003,4.5\n"
        b"u1,i1,view,1700000004,\n"
    )
    report, lines = ingest_cli(tmp_path, "csv", tmp_path / "events.csv")
    assert report["quarantined"] == {"bad_timestamp": 2, "bad_value": 3, "missing_timestamp": 1}
    assert records(lines, "bad_value") == [5, 6, 7]
    values = Dataset.load(tmp_path / "out").events["value"].tolist()
    assert values[0] == 4.5 and pd.isna(values[1])


# ------------------------------------------------------------ failing cleanly


def test_a_failed_ingest_leaves_no_partial_dataset(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"visitor,item_id,type,timestamp\nu1,i1,view,1700000000\n")
    (tmp_path / "b.csv").write_bytes(HEADER + GOOD_ROW)  # no "visitor" column
    out = tmp_path / "out"
    with pytest.raises(ShopsenseError, match="visitor"):
        ingest("csv", [tmp_path], out, ReadOptions(mapping={"user_id": "visitor"}), progress=False)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_a_failed_ingest_keeps_the_dataset_that_was_there(tmp_path):
    (tmp_path / "events.csv").write_bytes(HEADER + GOOD_ROW)
    out = tmp_path / "out"
    ingest("csv", [tmp_path / "events.csv"], out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ShopsenseError):
        ingest(
            "csv",
            [tmp_path / "events.csv"],
            out,
            ReadOptions(mapping={"user_id": "nope"}),
            progress=False,
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
