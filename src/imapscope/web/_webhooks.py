"""The webhooks pages: endpoints (add, with the signing secret shown once; test; rotate; enable,
disable, delete) and each endpoint's deliveries and attempts, with redelivery."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imapscope.api._events import EVENT_KINDS
from imapscope.store import Store, StoreError
from imapscope.web._common import Sess, page
from imapscope.webhooks import check_url, new_secret, send_test


def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def listing(
        request: Request, s: Any, *, error: str = "", code: int = 200, said: str = "",
        secret: str = "",
    ) -> HTMLResponse:  # fmt: skip
        store = _store(request)
        response = page(request, "webhooks.html", s, code=code, webhooks=await store.webhooks(),
                        counts=await store.delivery_counts(), kinds=EVENT_KINDS, error=error,
                        said=said, secret=secret)  # fmt: skip
        if secret:
            response.headers["Cache-Control"] = "no-store"
        return response

    @r.get("/webhooks")
    async def webhooks(request: Request, s: Sess) -> HTMLResponse:
        return await listing(request, s)

    @r.post("/webhooks")
    async def add(request: Request, s: Sess) -> HTMLResponse:
        form = await request.form()
        url = str(form.get("url", "")).strip()
        events = [str(k) for k in form.getlist("events") if k in EVENT_KINDS]
        try:
            shown = check_url(url)
        except StoreError as exc:
            return await listing(request, s, error=str(exc), code=422)
        secret = new_secret()
        added = await _store(request).add_webhook(
            url, shown, secret, events=events, description=str(form.get("description", ""))[:200]
        )
        return await listing(request, s, said=f"Added the webhook to {added.shown}.",
                             secret=secret)  # fmt: skip

    @r.post("/webhooks/{webhook_id}/test")
    async def test(request: Request, webhook_id: int, s: Sess) -> HTMLResponse:
        done = await send_test(_store(request), webhook_id)
        if done.ok:
            return await listing(request, s, said=f"The test message was taken ({done.status}, "
                                 f"{done.ms} ms).")  # fmt: skip
        what = f"answered {done.status}" if done.status is not None else "could not be reached"
        said = f"The test message failed: the endpoint {what}: {done.said}"
        return await listing(request, s, code=502, error=said)

    @r.post("/webhooks/{webhook_id}/rotate")
    async def rotate(request: Request, webhook_id: int, s: Sess) -> HTMLResponse:
        secret = new_secret()
        await _store(request).rotate_webhook(webhook_id, secret, now=dt.datetime.now(dt.UTC))
        return await listing(request, s, said="A new signing secret; the old one still signs "
                             "for 24 hours.", secret=secret)  # fmt: skip

    @r.post("/webhooks/{webhook_id}/{action}")
    async def act(request: Request, webhook_id: int, action: str, s: Sess) -> Response:
        store = _store(request)
        if action == "delete":
            await store.remove_webhook(webhook_id)
        elif action in ("enable", "disable"):
            await store.update_webhook(webhook_id, enabled=action == "enable")
        else:
            return await listing(request, s, code=404, error=f"There is no action {action!r}.")
        return RedirectResponse("/webhooks", status_code=303)

    @r.get("/webhooks/{webhook_id}")
    async def log(request: Request, webhook_id: int, s: Sess) -> HTMLResponse:
        store = _store(request)
        return page(request, "webhook.html", s, webhook=await store.webhook(webhook_id),
                    deliveries=await store.deliveries(webhook_id, limit=50),
                    attempts=await store.attempts(webhook_id, limit=50))  # fmt: skip

    @r.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    async def redeliver(request: Request, webhook_id: int, delivery_id: int, s: Sess) -> Response:
        await _store(request).redeliver(webhook_id, delivery_id, now=dt.datetime.now(dt.UTC))
        return RedirectResponse(f"/webhooks/{webhook_id}", status_code=303)

    return r
