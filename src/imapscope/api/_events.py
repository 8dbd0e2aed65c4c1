"""``/api/v1/events`` (a page of events after a cursor, optionally held until one comes) and
``/api/v1/events/stream`` (the same as Server-Sent Events, resumable with ``Last-Event-ID``).

The event table is the one source: its ids only grow, and each event was written in the same
transaction as the change it describes. A wait wakes at once for events this process wrote
(:attr:`~imapscope.store._db.Database.events_written`) and looks again every
:data:`POLL` seconds for those of other workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from imapscope.api._errors import ApiError
from imapscope.api._models import MAX_ID
from imapscope.store import EventView, Store, jsonable

#: Every event kind the store writes (docs/serve.md describes each).
EVENT_KINDS = (
    "account.state",
    "account.error",
    "expectation.matched",
    "incident.opened",
    "incident.resolved",
    "folder.added",
    "folder.removed",
    "folder.reset",
    "folder.synced",
    "message.new",
    "message.flags",
    "message.expunged",
)
#: How often a wait looks at the database for other workers' events (seconds).
POLL = 0.25
#: Seconds between keep-alive comments on an idle stream (proxies close silent connections).
PING = 15

Kind = Annotated[str | None, Query(description="only this kind")]
Account = Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this account")]


def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


async def _filters(store: Store, kind: str | None, account: int | None) -> None:
    if kind is not None and kind not in EVENT_KINDS:
        raise ApiError(422, f"unknown event kind {kind!r}: use one of {', '.join(EVENT_KINDS)}")
    if account is not None:
        await store.account(account)  # 404 for an account that does not exist


def _wanted(batch: Sequence[EventView], kind: str | None, account: int | None) -> list[EventView]:
    return [
        e for e in batch
        if (kind is None or e.kind == kind) and (account is None or e.account_id == account)
    ]  # fmt: skip


def events_router() -> APIRouter:
    router = APIRouter(tags=["events"])

    @router.get("/events")
    async def events(
        request: Request,
        after: Annotated[int, Query(ge=0, le=MAX_ID, description="the last id you have seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for one")] = 0,
        kind: Kind = None,
        account: Account = None,
    ) -> dict[str, Any]:
        """Events after the cursor ``after``, oldest first; ``next`` is the cursor to send
        next. With ``wait`` the call returns as soon as one matches (for tests that wait for
        a message to arrive)."""
        store = _store(request)
        await _filters(store, kind, account)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        cursor = after
        while True:
            batch = await store.events(after=cursor, limit=limit)
            cursor = batch[-1].id if batch else cursor
            found = _wanted(batch, kind, account)
            left = deadline - loop.time()
            if found or len(batch) == limit or left <= 0:
                return {"events": [jsonable(e) for e in found], "next": cursor}
            await store.events_written.wait(min(POLL, left))

    @router.get(
        "/events/stream",
        response_class=EventSourceResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "one SSE message per event: id, event (the kind), "
                         "data (the event as JSON)"}},
    )  # fmt: skip
    async def stream(
        request: Request,
        kind: Kind = None,
        account: Account = None,
        after: Annotated[
            int | None,
            Query(ge=0, le=MAX_ID, description="start after this id (default: from now on)"),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(max_length=20, description="resume after this id (browsers send it when "
                   "they reconnect)"),
        ] = None,
    ) -> EventSourceResponse:  # fmt: skip
        """Events as Server-Sent Events, as they are written: each message's ``id`` is the
        event's id, ``event`` its kind, ``data`` the event as JSON (as ``/events`` gives it).
        ``Last-Event-ID`` (or ``after``) resumes after an id without a gap; without either,
        the stream starts with the next event. A comment every 15 s keeps it open."""
        store = _store(request)
        await _filters(store, kind, account)
        if last_event_id is not None:
            if not last_event_id.isdigit():
                raise ApiError(422, f"Last-Event-ID {last_event_id!r} is not an event id (a "
                               "number); send the id of the last event you received")  # fmt: skip
            cursor = int(last_event_id)
        else:
            cursor = after if after is not None else await store.last_event_id()

        async def messages() -> AsyncIterator[ServerSentEvent]:
            position = cursor
            while True:
                batch = await store.events(after=position, limit=1000)
                for e in _wanted(batch, kind, account):
                    data = orjson.dumps(jsonable(e)).decode()
                    yield ServerSentEvent(data=data, id=str(e.id), event=e.kind)
                position = batch[-1].id if batch else position
                if len(batch) < 1000:
                    await store.events_written.wait(POLL)

        return EventSourceResponse(messages(), ping=PING)

    return router
