"""Erasing a user from a dataset folder, so that nothing read from it brings
them back.

The user's events leave ``events.parquet`` and their rejected rows leave
``quarantine.jsonl``; their row of ``users.parquet`` stays, so dense ids (and
every model trained on the folder) keep their meaning, but its source id
becomes a pseudonym and its attributes are emptied. The folder's
``tombstones.json`` keeps a SHA-256 of each erased id (not the id), which
``ingest`` honours: re-ingesting the source files into the folder (or into
another, with ``--tombstones``) drops the user's rows, counted in the report
as ``erased_user`` but never written out, not even to the quarantine.
Every step is idempotent and each file is replaced whole (written aside,
then renamed), under a lock on the folder: several workers may erase
the same user at once, and a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.errors import ShopsenseError

TOMBSTONES_FILE = "tombstones.json"
QUARANTINE_FILE = "quarantine.jsonl"
LOCK_FILE = ".erase.lock"
ERASED_PREFIX = "erased-"
DERIVED_FILE = "derived.json"


def user_hash(user_id: str) -> str:
    return hashlib.sha256(str(user_id).encode("utf-8")).hexdigest()


def tombstones(folder: Path) -> set[str]:
    """The hashes (``user_hash``) of the users erased from ``folder``."""
    path = Path(folder) / TOMBSTONES_FILE
    if not path.is_file():
        return set()
    return set(json.loads(path.read_text(encoding="utf-8"))["users_sha256"])


def read_tombstones(path: Path) -> set[str]:
    """The hashes in ``path``: a dataset folder or a ``tombstones.json``."""
    path = Path(path)
    if path.is_dir():
        return tombstones(path)
    try:
        return set(json.loads(path.read_text(encoding="utf-8"))["users_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShopsenseError(f"{path} is not a tombstones file ({e})") from None


def write_tombstones(folder: Path, hashes: set[str]) -> None:
    text = json.dumps({"users_sha256": sorted(hashes)}, indent=1) + "\n"
    replace_file(Path(folder) / TOMBSTONES_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def erased_mask(user_ids: pd.Series, hashes: set[str]) -> np.ndarray:
    """Which rows of ``user_ids`` belong to erased users (each distinct id hashed once)."""
    if not hashes or not len(user_ids):
        return np.zeros(len(user_ids), bool)
    codes, distinct = pd.factorize(user_ids)  # a missing id is code -1: not erased
    erased = np.array([user_hash(str(u)) in hashes for u in distinct] + [False], bool)
    return erased[codes]


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` among processes on this machine."""
    with open(Path(folder) / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def erased_users(users: pd.DataFrame) -> np.ndarray:
    """Rows of ``users`` (a ``users.parquet`` frame) whose user was erased."""
    return np.flatnonzero(users["user_id"].astype(str).str.startswith(ERASED_PREFIX).to_numpy())


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary path)``, then rename it over ``path``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)


def erase_user(folder: Path, user_id: str) -> dict[str, int]:
    """Remove ``user_id`` from the dataset in ``folder``; returns, per file, how
    many rows went (files that held nothing of the user are left out)."""
    folder = Path(folder)
    removed: dict[str, int] = {}
    with folder_lock(folder):
        users = pd.read_parquet(folder / "users.parquet")
        rows = np.flatnonzero(users["user_id"].astype(str).to_numpy() == str(user_id))
        if len(rows):
            events = pd.read_parquet(folder / "events.parquet")
            doomed = np.isin(events["user"].to_numpy(), rows)
            if doomed.any():
                replace_file(
                    folder / "events.parquet",
                    lambda p: events[~doomed].to_parquet(p, index=False),
                )
                removed["events.parquet"] = int(doomed.sum())
            pseudonym = f"{ERASED_PREFIX}{user_hash(user_id)[:16]}"
            users.loc[rows, "user_id"] = [f"{pseudonym}-{r}" for r in rows]
            users.loc[rows, "attributes"] = "{}"
            replace_file(folder / "users.parquet", lambda p: users.to_parquet(p, index=False))
            removed["users.parquet"] = len(rows)
        quarantined = _erase_quarantined(folder / QUARANTINE_FILE, str(user_id))
        if quarantined:
            removed[QUARANTINE_FILE] = quarantined
        write_tombstones(folder, tombstones(folder) | {user_hash(user_id)})
    return removed


def _erase_quarantined(path: Path, user_id: str) -> int:
    """Drop the rejected rows whose ``user_id`` is the user's, and the malformed
    lines that hold the id as a field."""
    if not path.is_file():
        return 0
    as_field = re.compile(rf"(?<![\w-]){re.escape(user_id)}(?![\w-])")
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line).get("row") or {}
            except (json.JSONDecodeError, AttributeError):
                row = {}
            row = row if isinstance(row, dict) else {}
            theirs = str(row.get("user_id")) == user_id
            if theirs or as_field.search(str(row.get("text", ""))):
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        replace_file(path, lambda p: p.write_text("".join(kept), encoding="utf-8"))
    return dropped


def register_derived(folder: Path, kind: str, out: Path) -> None:
    """Note in the dataset folder that ``out`` holds per-user data derived from
    it (batch lists), so an erasure reaches that copy too."""
    with folder_lock(folder):
        derived = derived_folders(folder)
        paths = derived.setdefault(kind, [])
        if str(Path(out).resolve()) not in paths:
            paths.append(str(Path(out).resolve()))
        text = json.dumps(derived, indent=2) + "\n"
        replace_file(Path(folder) / DERIVED_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def derived_folders(folder: Path) -> dict[str, list[str]]:
    path = Path(folder) / DERIVED_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
