"""Logging in with an API token (exchanged for a session cookie) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imapscope.web._common import COOKIE, SESSION_LIFETIME, Sess, page, service_of, web_state


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/login")
    async def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", None, error="")

    @r.post("/login")
    async def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
        throttle = web_state(request).throttle
        address = request.client.host if request.client else "?"
        wait = throttle.retry_after(address)
        if wait:
            refused = page(
                request, "login.html", None, code=429,
                error=f"Too many wrong tokens from this address: try again in {wait:.0f} s.",
            )  # fmt: skip
            refused.headers["Retry-After"] = str(int(wait) + 1)
            return refused
        store = service_of(request).store
        found = await store.check_token(token.strip()) if token else None
        if found is None:
            throttle.failed(address)
            return page(
                request, "login.html", None, code=401,
                error="That token is not valid. Use the token serve printed when it first "
                "started, or make one with 'imapscope tokens create NAME'.",
            )  # fmt: skip
        throttle.succeeded(address)
        cookie, _session = await store.start_web_session(found.id, SESSION_LIFETIME)
        response = RedirectResponse("/accounts", status_code=303)
        response.set_cookie(
            COOKIE, cookie, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
            max_age=int(SESSION_LIFETIME.total_seconds()),
        )  # fmt: skip
        return response

    @r.post("/logout")
    async def logout(request: Request, s: Sess) -> Response:
        await service_of(request).store.end_web_session(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return r
