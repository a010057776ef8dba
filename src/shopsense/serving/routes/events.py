"""Behaviour events coming in."""

from __future__ import annotations

import time
import uuid

from fastapi import HTTPException, Request

from shopsense.serving.limits import declared
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import EventsAccepted, EventsIn
from shopsense.serving.service import service_of
from shopsense.serving.store import Event

router = concern_router("events")


@router.post(
    "/events",
    response_model=EventsAccepted,
    responses=declared(404, "An event names an item the catalogue does not hold."),
)
def post_events(request: Request, body: EventsIn) -> EventsAccepted:
    """One event or a batch of up to 1,000, stored durably before the answer."""
    service = service_of(request)
    events = body if isinstance(body, list) else [body]
    service.changes.catch_up()  # an item added on another worker is known here
    now = int(time.time())
    accepted = []
    for n, e in enumerate(events):
        if e.item_id is not None and e.item_id not in service.catalog_ids:
            which = f"event {n}: " if isinstance(body, list) else ""
            raise HTTPException(404, f"{which}item_id {e.item_id!r} is not in the catalog")
        accepted.append(
            Event(
                e.event_id or uuid.uuid4().hex,
                e.user_id,
                e.type,
                now if e.timestamp is None else e.timestamp,
                e.item_id,
                e.session_id,
                e.query,
                e.request_id,
                e.value,
            )
        )
    new = service.store.append_events(accepted)
    service.metrics.events_accepted(new)
    return EventsAccepted(received=len(events), accepted=new, duplicates=len(events) - new)
