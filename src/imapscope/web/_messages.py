"""An account's messages: paged, searchable, filtered by folder and unseen; one message opened
(fetched live, read-only): headers, text, HTML in a sandboxed frame, attachments."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from imapscope.api._models import MAX_UID
from imapscope.mime import HTML_POLICY, readable
from imapscope.store import NotFoundError
from imapscope.sync import SyncFailure, SyncService, fetch_message
from imapscope.web._accounts import AccountId
from imapscope.web._common import MESSAGES_CACHED, Sess, page, service_of, web_state

PAGE = 50
FolderName = Annotated[str, Query(max_length=1000)]
MessageUid = Annotated[int, Query(ge=1, le=MAX_UID)]


async def _fetched(request: Request, service: SyncService, account_id: int, folder: str,
                   uid: int) -> bytes:  # fmt: skip
    """The message's text from the server, kept for a moment: the page and its HTML frame are
    two requests, and should be one fetch."""
    cache = web_state(request).fetched
    key = (account_id, folder, uid)
    if key not in cache:
        account = await service.store.account(account_id)
        cache[key] = await fetch_message(service.store, account, folder, uid, service.options)
        while len(cache) > MESSAGES_CACHED:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/accounts/{account_id}/messages")
    async def messages(
        request: Request, account_id: AccountId, s: Sess,
        folder: FolderName = "",
        q: Annotated[str, Query(max_length=200)] = "",
        unseen: bool = False,
        page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
    ) -> HTMLResponse:  # fmt: skip
        service = service_of(request)
        account = await service.store.account(account_id)
        folders = sorted((await service.store.folder_counts(account_id)).items())
        names = [name for name, _ in folders]
        error = ""
        if folder and folder not in names:
            error = f"There is no folder {folder!r} in this account; showing all folders."
            folder = ""
        total, found = await service.store.messages(
            account_id, folder=folder or None, unseen=True if unseen else None, text=q or None,
            limit=PAGE, offset=(page_number - 1) * PAGE,
        )  # fmt: skip
        pages = max(1, -(-total // PAGE))
        return page(
            request, "messages.html", s, account=account, folders=folders, folder=folder,
            q=q, unseen=unseen, messages=found, total=total, page_number=page_number,
            pages=pages, first=(page_number - 1) * PAGE + 1 if found else 0,
            last=(page_number - 1) * PAGE + len(found), error=error,
        )  # fmt: skip

    @r.get("/accounts/{account_id}/message")
    async def message(
        request: Request, account_id: AccountId, s: Sess,
        folder: FolderName, uid: MessageUid,
    ) -> HTMLResponse:  # fmt: skip
        service = service_of(request)
        account = await service.store.account(account_id)
        meta = await service.store.message(account_id, folder, uid)
        shown, problem = None, ""
        try:
            raw = await _fetched(request, service, account_id, folder, uid)
            shown = await asyncio.to_thread(readable, raw)  # seconds, for a hostile message
        except SyncFailure as exc:
            problem = f"The server did not give the message: {exc.finding.summary} Fix: " + (
                exc.finding.fix
            )
        except LookupError as exc:
            problem = f"{exc}."
        return page(request, "message.html", s, account=account, meta=meta, shown=shown,
                    problem=problem, folder=folder, uid=uid)  # fmt: skip

    @r.get("/ui/accounts/{account_id}/message.html")
    async def message_html(
        request: Request, account_id: AccountId, s: Sess,
        folder: FolderName, uid: MessageUid,
    ) -> Response:  # fmt: skip
        """The message's HTML part, for the sandboxed frame: its own policy lets nothing run
        and nothing load from the network."""
        service = service_of(request)
        try:
            raw = await _fetched(request, service, account_id, folder, uid)
            html = (await asyncio.to_thread(readable, raw)).html
        except (SyncFailure, LookupError) as exc:
            raise NotFoundError(f"the message could not be fetched: {exc}") from exc
        return HTMLResponse(html, headers={
            "Content-Security-Policy": HTML_POLICY, "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        })  # fmt: skip

    return r
