"""``/api/v1/webhooks``: endpoints that receive events as signed JSON (docs/webhooks.md):
add (the signing secret is shown once), list, change, remove, rotate the secret, send a test
message, the delivery log, redeliver one, replay since an event or a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from imapscope.api._errors import ApiError
from imapscope.api._events import EVENT_KINDS
from imapscope.api._models import MAX_ID
from imapscope.store import DELIVERY_STATES, Store, StoreError, WebhookView, jsonable
from imapscope.webhooks import check_url, new_secret, send_test

WebhookId = Annotated[int, Path(ge=1, le=MAX_ID, description="the webhook's id")]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID, description="the delivery's id")]
Kinds = list[Annotated[str, Field(max_length=40)]]
Accounts = list[Annotated[int, Field(ge=1, le=MAX_ID)]]


class WebhookIn(BaseModel):
    """An endpoint: every event of the kinds in ``events`` (none: every kind) of the accounts
    in ``accounts`` (none: every account), from now on."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="http:// or https://")
    events: Kinds = Field(default_factory=list, max_length=len(EVENT_KINDS))
    accounts: Accounts = Field(default_factory=list, max_length=1000)
    description: str = Field("", max_length=200)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=2000)
    events: Kinds | None = Field(None, max_length=len(EVENT_KINDS))
    accounts: Accounts | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = Field(None, description="true also clears a disabled endpoint's "
                                 "failures")  # fmt: skip


class ReplayIn(BaseModel):
    """Which events to send again: those after ``after_event``, or written since ``since``."""

    model_config = ConfigDict(extra="forbid")

    after_event: int | None = Field(None, ge=0, le=MAX_ID)
    since: dt.datetime | None = None


def webhook_out(view: WebhookView, counts: dict[str, int]) -> dict[str, Any]:
    found = jsonable(view)
    found["url"] = found.pop("shown")
    found["deliveries"] = {s: counts.get(s, 0) for s in DELIVERY_STATES}
    return found


def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


async def _checked(store: Store, events: list[str] | None, accounts: list[int] | None) -> None:
    unknown = [k for k in events or [] if k not in EVENT_KINDS]
    if unknown:
        raise ApiError(422, f"unknown event kind {unknown[0]!r}: use some of "
                       f"{', '.join(EVENT_KINDS)} (or none for every kind)")  # fmt: skip
    known = {a.id for a in await store.accounts()}
    missing = [a for a in accounts or [] if a not in known]
    if missing:
        raise ApiError(422, f"no account with id {missing[0]}; list them with GET "
                       "/api/v1/accounts (or give none for every account)")  # fmt: skip


def _url(url: str) -> str:
    try:
        return check_url(url)
    except StoreError as exc:
        raise ApiError(422, str(exc)) from None


def webhooks_router() -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.get("/webhooks")
    async def webhooks(request: Request) -> list[dict[str, Any]]:
        store = _store(request)
        counts = await store.delivery_counts()
        return [webhook_out(w, counts.get(w.id, {})) for w in await store.webhooks()]

    @router.post("/webhooks", status_code=201)
    async def add(body: WebhookIn, request: Request) -> dict[str, Any]:
        """A new endpoint, with its signing secret: this answer is the only time it is shown."""
        store = _store(request)
        shown = _url(body.url)
        await _checked(store, body.events, body.accounts)
        secret = new_secret()
        view = await store.add_webhook(
            body.url.strip(), shown, secret, events=body.events, accounts=body.accounts,
            description=body.description,
        )  # fmt: skip
        return webhook_out(view, {}) | {"secret": secret}

    @router.get("/webhooks/{webhook_id}")
    async def webhook(webhook_id: WebhookId, request: Request) -> dict[str, Any]:
        store = _store(request)
        counts = (await store.delivery_counts()).get(webhook_id, {})
        return webhook_out(await store.webhook(webhook_id), counts)

    @router.patch("/webhooks/{webhook_id}")
    async def change(webhook_id: WebhookId, body: WebhookPatch, request: Request) -> dict[str, Any]:
        store = _store(request)
        await store.webhook(webhook_id)  # 404 first
        shown = _url(body.url) if body.url is not None else None
        await _checked(store, body.events, body.accounts)
        view = await store.update_webhook(
            webhook_id, url=body.url.strip() if body.url else None, shown=shown,
            events=body.events, accounts=body.accounts, description=body.description,
            enabled=body.enabled,
        )  # fmt: skip
        return webhook_out(view, (await store.delivery_counts()).get(webhook_id, {}))

    @router.delete("/webhooks/{webhook_id}", status_code=204)
    async def remove(webhook_id: WebhookId, request: Request) -> None:
        await _store(request).remove_webhook(webhook_id)

    @router.post("/webhooks/{webhook_id}/rotate")
    async def rotate(webhook_id: WebhookId, request: Request) -> dict[str, Any]:
        """A new signing secret (shown this once); the old one still signs for 24 hours, so
        receivers can switch without losing a message."""
        secret = new_secret()
        view = await _store(request).rotate_webhook(webhook_id, secret, now=dt.datetime.now(dt.UTC))
        until = view.rotating_until
        return {"secret": secret, "old_secret_valid_until": until.isoformat() if until else None}

    @router.post("/webhooks/{webhook_id}/test")
    async def test(webhook_id: WebhookId, request: Request, response: Response) -> dict[str, Any]:
        """Send a ``webhook.test`` message now; 502 with what happened when it failed."""
        done = await send_test(_store(request), webhook_id)
        found = {"ok": done.ok, "status": done.status, "ms": done.ms, "response": done.said}
        if not done.ok:
            response.status_code = 502
            what = (f"the endpoint answered {done.status}" if done.status is not None
                    else "the endpoint could not be reached")  # fmt: skip
            found["error"] = f"{what}: {done.said}"
        return found

    @router.get("/webhooks/{webhook_id}/deliveries")
    async def deliveries(
        webhook_id: WebhookId, request: Request,
        status: Annotated[str | None, Query(description="pending, delivered or failed")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The endpoint's deliveries, newest first (finished ones are kept 7 days)."""
        if status is not None and status not in DELIVERY_STATES:
            raise ApiError(422, f"status {status!r} is unknown; use {', '.join(DELIVERY_STATES)}")
        found = await _store(request).deliveries(webhook_id, status=status, limit=limit)
        return [jsonable(d) for d in found]

    @router.get("/webhooks/{webhook_id}/attempts")
    async def attempts(
        webhook_id: WebhookId, request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Every attempt, newest first (the last 1,000): when, the HTTP status (null: no
        answer), milliseconds, and the answer's start or what went wrong."""
        return [dataclasses.asdict(a) | {"at": a.at.isoformat()}
                for a in await _store(request).attempts(webhook_id, limit=limit)]  # fmt: skip

    @router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202)
    async def redeliver(
        webhook_id: WebhookId, delivery_id: DeliveryId, request: Request
    ) -> dict[str, Any]:
        """Send one delivery again now (same ``webhook-id``, same body, a new round of
        attempts)."""
        await _store(request).redeliver(webhook_id, delivery_id, now=dt.datetime.now(dt.UTC))
        return {"queued": 1}

    @router.post("/webhooks/{webhook_id}/replay", status_code=202)
    async def replay(webhook_id: WebhookId, body: ReplayIn, request: Request) -> dict[str, Any]:
        """Send again every event the endpoint wants after ``after_event`` (or written since
        ``since``), 10,000 at most; each keeps its ``webhook-id``."""
        if (body.after_event is None) == (body.since is None):
            raise ApiError(422, "give after_event (an event id) or since (a time), one of them")
        if body.since is not None and body.since.tzinfo is None:
            raise ApiError(422, "give since with a time zone (e.g. 2026-12-01T08:00:00Z)")
        store = _store(request)
        await store.webhook(webhook_id)
        queued = await store.replay(webhook_id, after_event=body.after_event, since=body.since,
                                    now=dt.datetime.now(dt.UTC))  # fmt: skip
        return {"queued": queued}

    return router
