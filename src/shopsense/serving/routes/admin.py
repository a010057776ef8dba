"""The admin API (``Authorization: Bearer KEY``): catalogue changes, user
deletions, model reloads. Each is an entry of the change log, applied by
every worker before it answers what depends on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import Field

from shopsense.serving.limits import declared
from shopsense.serving.routes import admin_router, concern_router
from shopsense.serving.schemas import (
    MAX_EVENTS,
    ItemDeleted,
    ItemIn,
    ItemsUpserted,
    Reloaded,
    UserDeleted,
)
from shopsense.serving.service import service_of

router = concern_router("admin")
guarded = admin_router("admin")
"""The admin routes that need the key."""


@guarded.put("/items", response_model=ItemsUpserted)
def upsert_items(
    request: Request, items: Annotated[list[ItemIn], Field(max_length=MAX_EVENTS)]
) -> ItemsUpserted:
    """Add or replace catalog items (searchable at once; recommendable after the
    next model version)."""
    service = service_of(request)
    if items:
        service.upsert_items(list({i.item_id: i.model_dump() for i in items}.values()))
    return ItemsUpserted(upserted=len(items))


@guarded.delete("/items/{item_id}", response_model=ItemDeleted)
def delete_item(
    request: Request, item_id: Annotated[str, PathParam(min_length=1, max_length=200)]
) -> ItemDeleted:
    """Withdraw an item: no longer found, suggested or recommended, on every worker."""
    service = service_of(request)
    service.changes.catch_up()
    known = item_id in service.catalog_ids
    if known:
        service.change("items.delete", [item_id])
    return ItemDeleted(item_id=item_id, deleted=known)


@guarded.delete("/users/{user_id}", response_model=UserDeleted)
def delete_user(
    request: Request, user_id: Annotated[str, PathParam(max_length=200)]
) -> UserDeleted:
    """Erase the user everywhere: the state store (events, session, batch list),
    every model version's rows of them, the dataset, search profiles and batch
    files; every worker then treats them as a stranger."""
    service = service_of(request)
    events = service.store.delete_user(user_id)
    try:
        removed = service.erase_files(user_id)
    finally:  # logged even if a file could not be erased: every worker tries again
        service.change("users.delete", user_id)
    return UserDeleted(user_id=user_id, events_deleted=events, files=removed)


@guarded.post(
    "/admin/reload",
    response_model=Reloaded,
    responses=declared(409, "The newest model version cannot be loaded."),
)
def reload(request: Request) -> Reloaded:
    """Swap in the newest model version from the registry folder, on every worker."""
    service = service_of(request)
    try:
        version = service.reload()
    except Exception as e:  # a version still being written, or a broken one
        raise HTTPException(
            409,
            f"the newest model version cannot be loaded ({e}); still serving "
            f"{service.recommender.bundle.version}",
        ) from None
    service.change("model.reload", version)
    return Reloaded(model_version=version)


@router.get("/users", response_model=list[str])
def known_users(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[str]:
    """Some user ids the model knows, most active first (the storefront's switcher)."""
    service = service_of(request)
    return service.recommender.bundle.active_users(limit)
