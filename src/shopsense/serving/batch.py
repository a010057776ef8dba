"""Batch deployment: top-K for every user, precomputed.

Users go in chunks; each chunk's list is written as one Parquet part (to a
temporary name, then renamed, so a part on disk is always whole) and put in
the serving store. A rerun skips the parts already on disk, so an interrupted
run resumes where it stopped; parts of another model version are not reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from shopsense.data.erasure import erased_users, register_derived, replace_file
from shopsense.serving.recommendations import ModelBundle
from shopsense.serving.store import StateStore

MANIFEST = "batch.json"


def precompute(
    bundle: ModelBundle,
    store: StateStore | None,
    out: Path,
    k: int = 100,
    chunk: int = 2048,
    progress: bool = False,
) -> dict:
    """Write ``out/part-NNNNNNNN.parquet`` (user_id, rank, item_id, score) for
    every user and load each part into ``store``; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if bundle.dataset.path is not None:
        register_derived(bundle.dataset.path, "batch", out)
    manifest = {"model": str(bundle.path), "version": bundle.version, "k": k, "chunk": chunk}
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        before = json.loads(manifest_path.read_text())
        if {key: before.get(key) for key in manifest} != manifest:
            for stale in out.glob("part-*.parquet"):
                stale.unlink()  # another model or setting: start over
    manifest_path.write_text(json.dumps({**manifest, "complete": False}, indent=2) + "\n")
    model = bundle.model
    user_ids = bundle.dataset.users["user_id"].astype(str).to_numpy()
    erased = erased_users(bundle.dataset.users)
    k = min(k, model.n_items_)
    starts = range(0, len(user_ids), chunk)
    for start in tqdm(starts, desc="batch", unit=" chunk", disable=not progress):
        part = out / f"part-{start:08d}.parquet"
        users = np.arange(start, min(start + chunk, len(user_ids)))
        if part.is_file():
            frame = pd.read_parquet(part)
        else:
            ids, scores = model.recommend(users, k=k)
            frame = pd.DataFrame(
                {
                    "user_id": np.repeat(user_ids[users], k),
                    "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), len(users)),
                    "item_id": bundle.item_ids[ids.ravel()],
                    "score": scores.ravel().astype(np.float32),
                }
            )
            keep = np.isfinite(frame["score"]) & ~np.isin(np.repeat(users, k), erased)
            frame = frame[keep]
            partial = part.with_suffix(".partial")
            frame.to_parquet(partial, index=False)
            partial.rename(part)
        if store is not None:
            store.put_batch(
                {
                    user: list(
                        zip(g["item_id"].tolist(), g["score"].astype(float).tolist(), strict=True)
                    )
                    for user, g in frame.groupby("user_id", sort=False)
                }
            )
    manifest.update(complete=True, users=len(user_ids))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def erase_user(out: Path, user_id: str) -> int:
    """Remove ``user_id``'s lists from the parts in ``out``; returns the rows removed."""
    removed = 0
    for part in sorted(Path(out).glob("part-*.parquet")):
        frame = pd.read_parquet(part)
        doomed = frame["user_id"].astype(str).to_numpy() == user_id
        if doomed.any():
            replace_file(part, lambda p, kept=frame[~doomed]: kept.to_parquet(p, index=False))
            removed += int(doomed.sum())
    return removed
