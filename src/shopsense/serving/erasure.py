"""A user's deletion reaching every file a machine serves from.

The state store forgets the user in ``StateStore.delete_user``; this erases
them from the files: each model version's per-user rows, the own dataset of
each version that has one (``retrain`` writes it into ``<version>/data``),
the search index's profiles, the batch lists made from the dataset, and the
dataset itself (``shopsense.data.erasure``), whose tombstone is written last.
A machine that finds the tombstone has erased the user already, so each
machine does the work once however many of its workers apply the same
deletion. Dense ids differ from one dataset to another, so the user's row is
looked up by their id in each.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.dataset import MANIFEST, USERS_FILE
from shopsense.data.erasure import derived_folders, erase_user, folder_lock, tombstones, user_hash
from shopsense.models.base import ARRAYS_FILE, Recommender
from shopsense.models.registry import load_model
from shopsense.search.engine import PROFILES_FILE
from shopsense.search.profiles import UserProfiles
from shopsense.serving.batch import erase_user as erase_batch_lists
from shopsense.serving.recommendations import VERSION_DATA, model_versions

LOG = logging.getLogger("shopsense.serving")


def erase_user_files(user_id: str, data: Path, models: Path, index: Path | None) -> dict[str, int]:
    """Erase ``user_id`` from the files of ``data``, the model registry ``models``
    (the versions trained on ``data``, and those with their own dataset) and the
    search ``index``; returns the rows removed per file, leaving out files that
    held nothing of the user.

    Each dataset is asked for the user's dense id: a version with its own
    dataset numbers users its own way. The registry's lock is held throughout,
    so a ``retrain`` registering a version meanwhile either finds the tombstone
    or has its version erased here."""
    if user_hash(user_id) in tombstones(data):
        return {}
    removed: dict[str, int] = {}
    with folder_lock(models):
        rows, n_users = user_rows(data, user_id)
        for version in model_versions(models):
            try:
                if has_own_data(version):
                    removed.update(erase_from_version(version, user_id))
                elif len(rows) and Recommender.read_doc(version)["n_users"] == n_users:
                    load_model(version).erase_users_from(version, rows)
                    removed[str(version / ARRAYS_FILE)] = len(rows)
            except Exception as e:  # still being written: erased when it is served
                LOG.warning("model version %s left for later: %s", version.name, e)
        if index is not None:
            with folder_lock(index):
                profiles = index / PROFILES_FILE
                removed[str(profiles)] = UserProfiles.load(profiles).erase(user_id, profiles)
        for out in map(Path, derived_folders(data).get("batch", [])):
            if out.is_dir():
                with folder_lock(out):
                    removed[str(out)] = erase_batch_lists(out, user_id)
        removed.update((str(data / name), n) for name, n in erase_user(data, user_id).items())
    return {where: n for where, n in removed.items() if n}


def user_rows(data: Path, user_id: str) -> tuple[np.ndarray, int]:
    """The dense ids of ``user_id`` in the dataset ``data`` (none, or one), and
    how many users it has."""
    ids = pd.read_parquet(Path(data) / USERS_FILE, columns=["user_id"])["user_id"]
    return np.flatnonzero(ids.astype(str).to_numpy() == str(user_id)), len(ids)


def has_own_data(version: Path) -> bool:
    """Whether the model version carries the dataset it was trained on."""
    return (Path(version) / VERSION_DATA / MANIFEST).is_file()


def erase_from_version(version: Path, user_id: str) -> dict[str, int]:
    """Erase ``user_id`` from a version with its own dataset: the model's rows
    of them, then the dataset (its tombstone last, so a version found
    tombstoned is done)."""
    own = Path(version) / VERSION_DATA
    if user_hash(user_id) in tombstones(own):
        return {}
    removed: dict[str, int] = {}
    rows, n_users = user_rows(own, user_id)
    if len(rows):
        model = load_model(version)
        if model.n_users_ == n_users:
            model.erase_users_from(version, rows)
            removed[str(Path(version) / ARRAYS_FILE)] = len(rows)
    removed.update((str(own / name), n) for name, n in erase_user(own, user_id).items())
    return removed
