"""The ``shopsense`` command line, end to end, and its one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from shopsense.cli import cli, main

COMMANDS = ["generate", "ingest", "train", "evaluate", "recommend", "tune", "models"]


def run(capsys, *args):
    """Run the CLI in process; returns (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "Usage:" in out
    assert command in cli.commands


def test_whole_pipeline(capsys, tmp_path):
    raw, data, model = tmp_path / "raw", tmp_path / "data", tmp_path / "model"
    code, out, _ = run(
        capsys,
        "generate",
        "--out",
        str(raw),
        "--users",
        "300",
        "--items",
        "200",
        "--days",
        "20",
        "--seed",
        "4",
    )
    assert code == 0 and "wrote 300 users, 200 items" in out
    code, out, _ = run(capsys, "ingest", "--format", "parquet", "--out", str(data), str(raw))
    assert code == 0 and "accepted" in out
    assert json.loads((data / "report.json").read_text())["accepted"] > 0
    code, out, _ = run(
        capsys,
        "evaluate",
        "--data",
        str(data),
        "--models",
        "pop,itemknn",
        "--k",
        "1,5,10",
        "--json",
        str(tmp_path / "r.json"),
        "--param",
        "itemknn.k=30",
    )
    assert code == 0 and "NDCG@10" in out and "full ranking" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["split"] == "loo" and set(doc["results"]) == {"pop", "itemknn"}
    for metric in (
        "NDCG@10",
        "Recall@10",
        "Precision@5",
        "F1@10",
        "Hit@1",
        "MRR@10",
        "MAP@10",
        "Coverage@10",
        "AvgPop@10",
        "Accuracy",
        "fit_seconds",
    ):
        assert metric in doc["results"]["itemknn"], metric
    (tmp_path / "params.json").write_text('{"k": 15, "shrink": 2}')
    code, out, _ = run(
        capsys,
        "train",
        "--data",
        str(data),
        "--model",
        "itemknn",
        "--out",
        str(model),
        "--params",
        str(tmp_path / "params.json"),
    )
    assert code == 0 and "ItemKNN(k=15, shrink=2)" in out
    code, out, _ = run(capsys, "recommend", "--model", str(model), "--user", "u000005", "-k", "3")
    assert code == 0
    assert "recent history" in out and "top-3 recommendations" in out
    assert " 3. i" in out


def test_sampled_mode_is_labelled(capsys, store_dir, tmp_path):
    code, out, _ = run(
        capsys,
        "evaluate",
        "--data",
        str(store_dir),
        "--models",
        "pop",
        "--mode",
        "sampled",
        "--json",
        str(tmp_path / "s.json"),
    )
    assert code == 0 and "SAMPLED" in out
    assert "SAMPLED" in json.loads((tmp_path / "s.json").read_text())["mode"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--data", "/no/such/dir", "--models", "pop"], "not an ingested dataset"),
        (["evaluate", "--data", "{store}", "--models", "magic"], "unknown model"),
        (["evaluate", "--data", "{store}", "--models", "pop", "--k", "ten"], "--k takes"),
        (["evaluate", "--data", "{store}", "--models", "pop", "--param", "x=1"], "MODEL.NAME"),
        (
            [
                "train",
                "--data",
                "{store}",
                "--model",
                "itemknn",
                "--out",
                "{tmp}/m",
                "--param",
                "neighbours=3",
            ],
            "bad parameters",
        ),
        (["recommend", "--model", "{tmp}", "--user", "u1"], "not a saved shopsense model"),
        (["ingest", "--format", "csv", "--out", "{tmp}/o", "/no/such.csv"], "no such file"),
        (
            ["ingest", "--format", "csv", "--out", "{tmp}/o", "{tmp}", "--map", "user_id"],
            "NAME=VALUE",
        ),
        (["generate", "--out", "{tmp}/g", "--end", "someday"], "--end must be a date"),
    ],
)
def test_user_mistakes_are_one_line_errors(capsys, store_dir, tmp_path, args, message):
    args = [a.format(store=store_dir, tmp=tmp_path) for a in args]
    code, _out, err = run(capsys, *args)
    assert code != 0
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_user_is_a_clear_error(capsys, store_dir, tmp_path):
    run(capsys, "train", "--data", str(store_dir), "--model", "pop", "--out", str(tmp_path / "m"))
    code, _, err = run(capsys, "recommend", "--model", str(tmp_path / "m"), "--user", "ghost")
    assert (
        code == 1 and err.strip() == f"Error: unknown user id 'ghost' in dataset {store_dir.name}"
    )


def test_console_script_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "shopsense", "models"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0 and "itemknn" in done.stdout


def test_html_report_is_self_contained(capsys, store_dir, tmp_path):
    report = tmp_path / "report.html"
    code, out, _ = run(
        capsys,
        "evaluate",
        "--data",
        str(store_dir),
        "--models",
        "pop,itemknn",
        "--k",
        "5,10",
        "--report",
        str(report),
    )
    assert code == 0 and "report written" in out
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "<td>itemknn</td>" in page and "<td>pop</td>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
