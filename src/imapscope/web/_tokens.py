"""The tokens page: the API tokens (names and use, never the tokens), make one (shown once),
revoke one (its web sessions end with it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imapscope.store import StoreError
from imapscope.web._common import Sess, page, service_of


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/tokens")
    async def tokens(request: Request, s: Sess) -> HTMLResponse:
        found = await service_of(request).store.tokens()
        return page(request, "tokens.html", s, tokens=found, current=s.token_id, new=None,
                    error="")  # fmt: skip

    @r.post("/tokens")
    async def create(request: Request, s: Sess) -> HTMLResponse:
        store = service_of(request).store
        name = str((await request.form()).get("name", ""))
        try:
            view, token = await store.create_token(name)
        except StoreError as exc:
            return page(request, "tokens.html", s, code=422, tokens=await store.tokens(),
                        current=s.token_id, new=None, error=str(exc))  # fmt: skip
        # Shown once, on this response only (never stored, never in a URL).
        new = {"view": view, "token": token}
        response = page(request, "tokens.html", s, tokens=await store.tokens(),
                        current=s.token_id, new=new, error="")  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return response

    @r.post("/tokens/{token_id}/revoke")
    async def revoke(request: Request, token_id: int, s: Sess) -> Response:
        await service_of(request).store.revoke_token(token_id)
        # Revoking the token this session was made with ends the session too.
        return RedirectResponse("/login" if token_id == s.token_id else "/tokens",
                                status_code=303)  # fmt: skip

    return r
