"""The service surface: REST API under /api/v1 (its OpenAPI document at /api/v1/openapi.json),
/livez and /readyz. The web UI (:mod:`imapscope.web`) is mounted on the same app.

It presents the store and drives the sync service; it holds no protocol logic. Every route but
/livez needs a token: ``Authorization: Bearer <token>``. docs/api.md is the reference.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imapscope import __version__
from imapscope.api._edge import NO_TOKEN_SAID, Edge
from imapscope.api._errors import ApiError
from imapscope.api._events import events_router
from imapscope.api._expectations import expectations_router
from imapscope.api._metrics import metrics_router
from imapscope.api._models import (
    MAX_ID,
    MAX_UID,
    AccountIn,
    AccountOut,
    AccountPatch,
    AccountState,
    CheckIn,
    TokenIn,
    account_out,
    spec_of,
)
from imapscope.api._monitors import monitors_router
from imapscope.api._reports import reports_router
from imapscope.api._webhooks import webhooks_router
from imapscope.expect import ExpectError, ExpectService
from imapscope.monitor import MonitorService
from imapscope.probe import CheckOptions, run_check
from imapscope.store import (
    MAX_PAGE,
    AccountQuery,
    AccountView,
    ConflictError,
    NotFoundError,
    StoreError,
    TokenView,
    jsonable,
)
from imapscope.sync import SyncFailure, SyncService, VerifyError, fetch_message
from imapscope.webhooks import WebhookService

__all__ = ["ApiError", "create_app"]

T = TypeVar("T")
log = logging.getLogger("imapscope.serve")


def _problem(error: Any) -> str:
    """One validation problem as a person reads it."""
    where = ".".join(str(p) for p in error["loc"] if p != "body")
    if error.get("type") == "json_invalid":
        return (f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')} "
                f"at character {where or 0}); send a JSON object")  # fmt: skip
    return f"{where}: {error['msg']}"


def _service(request: Request) -> SyncService:
    service = request.app.state.service
    assert isinstance(service, SyncService)
    return service


async def require_token(request: Request) -> TokenView:
    """The token :class:`~imapscope.api._edge.Edge` checked before the body was read."""
    token = getattr(request.state, "token", None)
    if not isinstance(token, TokenView):  # the edge guards every /api/ path
        raise ApiError(401, NO_TOKEN_SAID)
    return token


Service = Annotated[SyncService, Depends(_service)]
AccountId = Annotated[int, Path(ge=1, le=MAX_ID, description="the account's id")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="the token's id")]
Uid = Annotated[int, Path(ge=1, le=MAX_UID, description="the message's UID in its folder")]


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` (a check, a verification) while the client waits; cancel it when the
    client goes away, so an abandoned request does not keep its connections to a server."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.25)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                break
        return await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


def create_app(
    service: SyncService, *, web: bool = True, manage_service: bool = False,
    public_url: str | None = None,
) -> FastAPI:  # fmt: skip
    """The app. ``manage_service`` starts and stops the sync service and the monitors with the
    app (``serve``); ``public_url`` is where people reach the UI (links in notifications)."""
    monitors = MonitorService(
        service.store, service.options, service.worker_id, public_url=public_url
    )
    webhooks = WebhookService(service.store, service.worker_id)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
            await monitors.start()
            await webhooks.start()
        try:
            yield
        finally:
            if manage_service:
                await webhooks.stop()
                await monitors.stop()
                await service.stop()

    app = FastAPI(
        title="imapscope",
        version=__version__,
        description="Registered IMAP accounts kept in sync: state, errors, folders, messages, "
        "events. Every route but /livez needs 'Authorization: Bearer <token>'.",
        # The OpenAPI document is a route of the API below (it needs the token like the rest);
        # no Swagger UI page: it loads its scripts from a CDN, which an offline install lacks.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.monitors = monitors
    app.state.expect = ExpectService(service)
    app.state.webhooks = webhooks
    app.add_middleware(Edge, check_token=service.store.check_token)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": exc.message, **exc.extra}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(ExpectError)
    async def _expect_error(_request: Request, exc: ExpectError) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        if isinstance(exc, VerifyError):
            body = {"error": str(exc), "report": exc.report.to_json()}
            return JSONResponse(body, status_code=422)
        status = (
            404
            if isinstance(exc, NotFoundError)
            else 409
            if isinstance(exc, ConflictError)
            else 400
        )
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        """A bug of ours: logged with an id the answer carries (never a bare 500 page)."""
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s", error_id, exc_info=exc)
        return JSONResponse(
            {"error": f"internal error {error_id}: imapscope failed (a bug); the log has the "
             "details under this id"}, status_code=500,
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        return JSONResponse(
            {"error": "invalid input: " + "; ".join(problems), "problems": problems},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        """404 and 405 in the API's error shape (the UI's own pages answer HTML)."""
        said = {404: f"no such route: {request.method} {request.url.path} (the API is under "
                     "/api/v1; GET /api/v1/openapi.json lists it)",
                405: f"{request.method} is not allowed on {request.url.path}"}  # fmt: skip
        return JSONResponse(
            {"error": said.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )  # fmt: skip

    @app.get("/livez", tags=["health"])
    async def livez() -> dict[str, str]:
        """The process answers (no token needed)."""
        return {"status": "ok"}

    app.include_router(_router(), prefix="/api/v1", dependencies=[Depends(require_token)])
    app.include_router(monitors_router(), prefix="/api/v1", dependencies=[Depends(require_token)])
    app.include_router(reports_router(), prefix="/api/v1", dependencies=[Depends(require_token)])
    app.include_router(
        expectations_router(), prefix="/api/v1", dependencies=[Depends(require_token)]
    )
    app.include_router(events_router(), prefix="/api/v1", dependencies=[Depends(require_token)])
    app.include_router(webhooks_router(), prefix="/api/v1", dependencies=[Depends(require_token)])
    app.include_router(_health_router())
    app.include_router(metrics_router(_service, require_token))
    if web:
        from imapscope.web import install  # noqa: PLC0415 - optional surface

        install(app)
    return app


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/readyz")
    async def readyz(service: Service, response: Response) -> dict[str, Any]:
        """Ready once the store answers and every account's supervisor has been started (no
        token needed: orchestrator probes cannot send one; it tells nothing but a count)."""
        try:
            accounts = len(await service.store.revisions())
        except Exception as exc:
            response.status_code = 503
            return {"status": "store unavailable", "detail": type(exc).__name__}
        if not service.ready:
            response.status_code = 503
            return {"status": "starting", "accounts": accounts}
        # Which process answered: with --workers N, the one the connection reached.
        return {"status": "ready", "accounts": accounts, "pid": os.getpid()}

    return router


async def _account_json(service: SyncService, account: AccountView) -> AccountOut:
    return account_out(account, await service.status(account))


def _router() -> APIRouter:
    router = APIRouter()

    # -- accounts ----------------------------------------------------------------------------

    @router.get("/accounts", tags=["accounts"], responses={200: {"headers": {
        "X-Total-Count": {"description": "accounts matching the filter (all pages)",
                          "schema": {"type": "integer"}},
        "Link": {"description": 'the next page, as <url>; rel="next" (RFC 8288), while '
                                "there is one", "schema": {"type": "string"}},
    }}})  # fmt: skip
    async def list_accounts(
        request: Request,
        response: Response,
        service: Service,
        state: Annotated[AccountState | None, Query(description="only in this state")] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="in e-mail, name or server")
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_PAGE, description="a page of this many (default: all)")
        ] = None,
        after: Annotated[
            int, Query(ge=0, le=MAX_ID, description="the page after this account id")
        ] = 0,
    ) -> list[AccountOut]:
        """Accounts by id, with their running state, health and counts: all of them, or one
        page (``limit``, then ``after`` the last id: the ``Link`` header gives the next page's
        URL) of those matching ``state`` and ``q``. ``X-Total-Count`` says how many match."""
        query = AccountQuery(state=state, text=q or None, after=after, limit=limit)
        response.headers["X-Total-Count"] = str(await service.store.account_count(query))
        if limit is None:
            found = await service.overview(query)
        else:
            found, next_after = await service.overview_page(query)
            if next_after is not None:
                following = request.url.include_query_params(after=next_after, limit=limit)
                response.headers["Link"] = f'<{following}>; rel="next"'
        return [account_out(a, status) for a, status in found]

    @router.post("/accounts", status_code=201, tags=["accounts"])
    async def add_account(
        request: Request,
        body: AccountIn,
        service: Service,
        verify: Annotated[bool, Query(description="run the check ladder first")] = True,
        force: Annotated[bool, Query(description="save even when verification fails")] = False,
    ) -> AccountOut:
        """Register an account. By default its settings are verified first (the check ladder);
        errors refuse the save with 422 and the report, unless ``force``."""
        adding = service.add(spec_of(body), body.secret, verify=verify, force=force)
        return await _account_json(service, await unless_disconnected(request, adding))

    @router.get("/accounts/{account_id}", tags=["accounts"])
    async def get_account(account_id: AccountId, service: Service) -> AccountOut:
        return await _account_json(service, await service.store.account(account_id))

    @router.patch("/accounts/{account_id}", tags=["accounts"])
    async def edit_account(
        request: Request,
        account_id: AccountId,
        body: AccountPatch,
        service: Service,
        verify: bool = True,
        force: bool = False,
    ) -> AccountOut:
        """Change some settings (and the secret, when given); verified like an add. An edit
        also wakes an account that waits in auth_error."""
        current = await service.store.account(account_id)
        spec = spec_of(body, base=current.spec)
        editing = service.update(account_id, spec, body.secret, verify=verify, force=force)
        return await _account_json(service, await unless_disconnected(request, editing))

    @router.delete("/accounts/{account_id}", status_code=204, tags=["accounts"])
    async def delete_account(account_id: AccountId, service: Service) -> None:
        """Stop syncing and delete the account with all its local data."""
        await service.remove(account_id)

    @router.post("/accounts/{account_id}/pause", tags=["accounts"])
    async def pause(account_id: AccountId, service: Service) -> AccountOut:
        return await _account_json(service, await service.pause(account_id, True))

    @router.post("/accounts/{account_id}/resume", tags=["accounts"])
    async def resume(account_id: AccountId, service: Service) -> AccountOut:
        return await _account_json(service, await service.pause(account_id, False))

    @router.post("/accounts/{account_id}/verify", tags=["accounts"])
    async def verify_account(
        request: Request, account_id: AccountId, service: Service
    ) -> dict[str, Any]:
        """Run the check ladder with the stored settings; the report (docs/check.md)."""
        account = await service.store.account(account_id)
        secret = await service.store.secret(account_id)
        return (await unless_disconnected(request, service.verify(account.spec, secret))).to_json()

    @router.post("/verify", tags=["accounts"])
    async def verify_settings(
        request: Request, body: AccountIn, service: Service
    ) -> dict[str, Any]:
        """Verify settings without saving them; the check report."""
        report = await unless_disconnected(request, service.verify(spec_of(body), body.secret))
        return report.to_json()

    @router.get("/accounts/{account_id}/status", tags=["state"])
    async def status(account_id: AccountId, service: Service) -> dict[str, Any]:
        return await service.status(await service.store.account(account_id))

    @router.get("/accounts/{account_id}/errors", tags=["state"])
    async def errors(account_id: AccountId, service: Service) -> list[dict[str, Any]]:
        """The last 20 errors, newest first."""
        await service.store.account(account_id)
        return [jsonable(e) for e in await service.store.errors(account_id)]

    # -- mail --------------------------------------------------------------------------------

    @router.get("/accounts/{account_id}/folders", tags=["mail"])
    async def folders(account_id: AccountId, service: Service) -> list[dict[str, Any]]:
        """Each folder as stored: ``messages`` held here, ``server_messages`` the server's own
        count when its last sync ended (null while a first sync runs, or while the store lacks
        messages the server listed), ``synced`` once its first full sync is done."""
        await service.store.account(account_id)
        counts = await service.store.folder_counts(account_id)
        return [
            {
                "name": f.name,
                "uidvalidity": f.uidvalidity,
                "uidnext": f.uidnext,
                "highestmodseq": f.highestmodseq,
                "messages": counts.get(f.name, 0),
                "server_messages": f.messages,
                "synced": f.complete,
            }
            for f in await service.store.folders(account_id)
        ]

    @router.get("/accounts/{account_id}/messages", tags=["mail"])
    async def messages(
        account_id: AccountId,
        service: Service,
        folder: str | None = None,
        unseen: bool | None = None,
        q: Annotated[str | None, Query(description="in subject or sender")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> dict[str, Any]:
        """Stored message metadata, newest first, one page at a time."""
        await service.store.account(account_id)
        if folder is not None:
            names = [f.name for f in await service.store.folders(account_id)]
            if folder not in names:
                raise ApiError(404, f"no folder {folder!r} in account {account_id}; its folders: "
                               f"{', '.join(names) or 'none synced yet'}")  # fmt: skip
        total, page = await service.store.messages(
            account_id, folder=folder, unseen=unseen, text=q, limit=limit, offset=offset
        )
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "messages": [jsonable(m) for m in page],
        }

    @router.get("/accounts/{account_id}/messages/{uid}", tags=["mail"])
    async def message(
        account_id: AccountId,
        uid: Uid,
        service: Service,
        folder: Annotated[str, Query(description="the folder the UID is in")] = "INBOX",
        body: Annotated[bool, Query(description="fetch the full text from the server")] = True,
    ) -> dict[str, Any]:
        """One message's metadata and, fetched live from the server, its full text."""
        account = await service.store.account(account_id)
        meta = await service.store.message(account_id, folder, uid)
        found = jsonable(meta)
        if body:
            try:
                raw = await fetch_message(service.store, account, folder, uid, service.options)
            except SyncFailure as exc:
                raise ApiError(
                    502, f"the server did not give the message: {exc.finding.summary}",
                    code=exc.finding.code,
                ) from exc  # fmt: skip
            except LookupError as exc:
                raise ApiError(404, str(exc)) from exc
            found["raw"] = raw.decode("utf-8", "replace")
        return found

    # -- checks ------------------------------------------------------------------------------

    @router.post("/check", tags=["check"])
    async def check(request: Request, body: CheckIn, service: Service) -> dict[str, Any]:
        """Run the check ladder against any server (the same report as ``imapscope check
        --json``); the password is used for this check only and never stored. ``security:
        none`` is plaintext (it implies ``allow_plaintext``); the check ends when the client
        disconnects."""
        options = CheckOptions(
            host=body.host, port=body.port, security=body.security,
            user=body.user, password=body.password, oauth2_token=body.oauth2_token,
            ca_file=service.options.ca_file, insecure=service.options.insecure,
            timeout=min(body.timeout, 60.0), allow_plaintext=body.allow_plaintext,
            ca_pem=body.ca_pem, pin_sha256=body.pin_sha256,
        )  # fmt: skip
        return (await unless_disconnected(request, run_check(options))).to_json()

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> dict[str, Any]:
        """The OpenAPI 3 document of this API."""
        document = request.app.openapi()
        assert isinstance(document, dict)
        return document

    # -- tokens ------------------------------------------------------------------------------

    @router.get("/tokens", tags=["tokens"])
    async def tokens(service: Service) -> list[dict[str, Any]]:
        return [jsonable(t) for t in await service.store.tokens()]

    @router.post("/tokens", status_code=201, tags=["tokens"])
    async def create_token(body: TokenIn, service: Service) -> dict[str, Any]:
        """A new token; the response is the only time it is shown."""
        view, token = await service.store.create_token(body.name)
        return jsonable(view) | {"token": token}

    @router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
    async def revoke_token(token_id: TokenId, service: Service) -> None:
        await service.store.revoke_token(token_id)

    return router
