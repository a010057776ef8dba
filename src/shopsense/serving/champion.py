"""Which model version the service serves: the champion.

The champion is the version of the newest ``model.promote`` entry of the
change log, so every worker and machine sharing the state store serves the
same one and a promotion reaches them as they apply the log. A store whose log
promoted nothing serves the newest version in the registry folder, as a
service without experiments always has; once something is promoted, a new
version in the folder is a challenger and waits for ``promote``.

History is the log itself: each promotion names the version it replaced,
and ``rollback`` promotes that one again.
"""

from __future__ import annotations

from pathlib import Path

from shopsense.errors import ShopsenseError
from shopsense.models.registry import load_model
from shopsense.serving.recommendations import model_versions
from shopsense.serving.store import StateStore

PAGE = 1000


def promotions(store: StateStore) -> list[dict[str, str | None]]:
    """The promotions so far, oldest first: each ``version`` and the ``previous``
    version it replaced."""
    found: list[dict[str, str | None]] = []
    after = 0
    while page := store.changes(after=after, limit=PAGE):
        found += [c.payload for c in page if c.kind == "model.promote"]
        after = page[-1].seq
    return found


def champion(store: StateStore) -> str | None:
    """The promoted version, or None when nothing was ever promoted (the
    newest version is served)."""
    promoted = promotions(store)
    return promoted[-1]["version"] if promoted else None


def served_version(store: StateStore, models: Path) -> str:
    """The version the service should serve now."""
    return champion(store) or model_versions(models)[-1].name


def version_path(models: Path, version: str) -> Path:
    """The folder of ``version`` in the registry ``models``."""
    for path in model_versions(models):
        if path.name == version:
            return path
    raise ShopsenseError(f"no model version {version!r} in {models}")


def promote(store: StateStore, models: Path, version: str) -> str:
    """Make ``version`` (a folder of the registry ``models``) the champion."""
    paths = {p.name: p for p in model_versions(models)}
    if version not in paths:
        raise ShopsenseError(
            f"no model version {version!r} in {models} (it has {', '.join(paths)})"
        )
    try:
        load_model(paths[version])  # a version that cannot serve is refused here, not by workers
    except Exception as e:
        raise ShopsenseError(f"model version {version} cannot be loaded: {e}") from None
    previous = served_version(store, models)
    if previous == version:  # already served: what it replaced stays what rollback returns to
        promoted = promotions(store)
        previous = promoted[-1].get("previous") if promoted else None
    store.append_change("model.promote", {"version": version, "previous": previous})
    return version


def rollback(store: StateStore, models: Path) -> str:
    """Serve again the version the last promotion replaced (with no promotion,
    the version before the served one in the registry)."""
    promoted = promotions(store)
    if promoted and promoted[-1].get("previous"):
        return promote(store, models, str(promoted[-1]["previous"]))
    current = served_version(store, models)
    names = [p.name for p in model_versions(models)]
    position = names.index(current) if current in names else 0
    if position == 0:
        raise ShopsenseError(f"{current} is the oldest version: there is nothing to roll back to")
    return promote(store, models, names[position - 1])
