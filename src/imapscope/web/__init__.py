"""The web admin UI: server-rendered pages (Jinja2) made live with htmx and idiomorph (both
vendored, no build step): polled fragments are morphed into the page by element id, so focus,
scroll and open details survive an update.

Presents the store and drives the sync service, like the API; no protocol logic. Login is with
an API token, exchanged for a session cookie (HttpOnly, SameSite=Strict) whose session lives in
the database (any worker accepts it; revoking the token ends it). Every form and every htmx
request carries the session's CSRF token. One module per resource: login, accounts, messages,
monitors (and channels), reports, public status pages, tokens, check.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from imapscope.store import NotFoundError, StoreError
from imapscope.web import (
    _accounts,
    _check,
    _login,
    _messages,
    _monitors,
    _reports,
    _status,
    _tokens,
    _webhooks,
)
from imapscope.web._common import HERE, CSRFError, LoginRequired, page

__all__ = ["install"]

#: Where the API's own error handlers answer (JSON), not the UI's pages.
API_PATHS = ("/api/", "/livez", "/readyz")


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return RedirectResponse("/login", status_code=303)


async def _csrf_failed(request: Request, _exc: Exception) -> Response:
    return page(
        request, "error.html", None, code=403,
        message="The form's security token did not match (the page was too old, or came from "
        "another site). Go back, reload the page and send it again.",
    )  # fmt: skip


def install(app: Any) -> None:
    """Mount the UI on ``app``: its routes, static files and error pages."""

    async def home() -> Response:
        return RedirectResponse("/accounts", status_code=303)

    async def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    app.add_api_route("/", home, include_in_schema=False)
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
    for module in (_login, _accounts, _messages, _monitors, _reports, _status, _tokens, _check,
                   _webhooks):  # fmt: skip
        app.include_router(module.router())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CSRFError, _csrf_failed)
    api_handler = app.exception_handlers[StoreError]  # JSON, for /api/v1

    async def store_error(request: Request, exc: Exception) -> Response:
        """On the UI's pages a missing account (say) is an HTML page, not the API's JSON."""
        if request.url.path.startswith(API_PATHS):
            return await api_handler(request, exc)  # type: ignore[no-any-return]
        status = 404 if isinstance(exc, NotFoundError) else 400
        return page(request, "error.html", None, code=status, message=str(exc))

    app.add_exception_handler(StoreError, store_error)
    http_handler = app.exception_handlers[StarletteHTTPException]  # JSON, for /api/v1

    async def http_error(request: Request, exc: Exception) -> Response:
        """An unknown page of the UI is an HTML page that says where to go."""
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith((*API_PATHS, "/static/")):
            return await http_handler(request, exc)  # type: ignore[no-any-return]
        message = (
            "There is no such page. The accounts are at /accounts."
            if exc.status_code == 404
            else f"{request.method} is not allowed here."
        )
        return page(request, "error.html", None, code=exc.status_code, message=message)

    app.add_exception_handler(StarletteHTTPException, http_error)
    invalid_handler = app.exception_handlers[RequestValidationError]  # JSON, for /api/v1

    async def invalid(request: Request, exc: Exception) -> Response:
        """A malformed UI address (an id that is not a number) is a page that says so."""
        if request.url.path.startswith(API_PATHS):
            return await invalid_handler(request, exc)  # type: ignore[no-any-return]
        return page(
            request,
            "error.html",
            None,
            code=404,
            message="That address is not valid here. The accounts are at /accounts.",
        )

    app.add_exception_handler(RequestValidationError, invalid)
