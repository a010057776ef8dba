"""A user's deletion reaching every file a machine serves from.

The state store forgets the user in ``StateStore.delete_user``; this erases
them from the files: each model version's per-user rows, the search index's
profiles, the batch lists made from the dataset, and the dataset itself
(``shopsense.data.erasure``), whose tombstone is written last. A machine that
finds the tombstone has erased the user already, so each machine does the
work once however many of its workers apply the same deletion.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.dataset import USERS_FILE
from shopsense.data.erasure import derived_folders, erase_user, folder_lock, tombstones, user_hash
from shopsense.models.base import ARRAYS_FILE, Recommender
from shopsense.models.registry import load_model
from shopsense.search.engine import PROFILES_FILE
from shopsense.search.profiles import UserProfiles
from shopsense.serving.batch import erase_user as erase_batch_lists
from shopsense.serving.recommendations import model_versions

LOG = logging.getLogger("shopsense.serving")


def erase_user_files(
    user_id: str, user: int | None, data: Path, models: Path, index: Path | None
) -> dict[str, int]:
    """Erase ``user_id`` (dense id ``user`` in the dataset ``data``, None if it
    has none) from the files of ``data``, the model registry ``models`` (the
    versions trained on ``data``) and the search ``index``; returns the rows
    removed per file, leaving out files that held nothing of the user."""
    if user_hash(user_id) in tombstones(data):
        return {}
    removed: dict[str, int] = {}
    if user is not None:
        with folder_lock(models):
            n_users = len(pd.read_parquet(data / USERS_FILE, columns=["user_id"]))
            for version in model_versions(models):
                try:
                    if Recommender.read_doc(version)["n_users"] == n_users:
                        load_model(version).erase_users_from(version, np.array([user]))
                        removed[str(version / ARRAYS_FILE)] = 1
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
