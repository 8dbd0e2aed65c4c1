"""The web admin UI: server-rendered pages (Jinja2) made live with htmx (vendored, no build step).

Presents the store and drives the sync service, like the API; no protocol logic. Login is with
an API token, exchanged for a session cookie (HttpOnly, SameSite=Strict; sessions live in this
process's memory, so a restart asks for the token again). Every form and every htmx request
carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from imapscope.probe import CATALOGUE, CheckOptions, Report, new_report, run_check
from imapscope.store import AccountSpec, AccountView, NotFoundError, StoreError
from imapscope.sync import STATES, SyncService, VerifyError, check_options
from imapscope.web._throttle import LoginThrottle

__all__ = ["install", "router"]

HERE = Path(__file__).parent
COOKIE = "imapscope_session"
SESSION_LIFETIME = dt.timedelta(hours=12)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["STATES"] = STATES


@dataclass
class Session:
    token_id: int
    csrf: str
    expires: dt.datetime


@dataclass
class CheckJob:
    report: Report
    task: asyncio.Task[Report] | None = None

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()


@dataclass
class WebState:
    sessions: dict[str, Session] = field(default_factory=dict)
    checks: dict[str, CheckJob] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


class LoginRequired(Exception):  # noqa: N818 - control flow
    pass


class CSRFError(Exception):
    pass


def _web(request: Request) -> WebState:
    state = getattr(request.app.state, "web", None)
    if state is None:
        state = request.app.state.web = WebState()
    assert isinstance(state, WebState)
    return state


def _service(request: Request) -> SyncService:
    service = request.app.state.service
    assert isinstance(service, SyncService)
    return service


async def session(request: Request) -> Session:
    """The logged-in session; POSTs and htmx requests must carry its CSRF token."""
    web = _web(request)
    sid = request.cookies.get(COOKIE, "")
    found = web.sessions.get(sid)
    now = dt.datetime.now(dt.UTC)
    if found is None or found.expires < now:
        web.sessions.pop(sid, None)
        raise LoginRequired
    if request.method == "POST":
        form = await request.form()
        sent = request.headers.get("X-CSRF-Token") or str(form.get("csrf", ""))
        if not secrets.compare_digest(sent, found.csrf):
            raise CSRFError
    return found


Sess = Annotated[Session, Depends(session)]


def page(
    request: Request, name: str, s: Session | None, code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"csrf": s.csrf if s else "", **context}, status_code=code
    )


def _spec(form: dict[str, str]) -> AccountSpec:
    def folders(key: str) -> tuple[str, ...]:
        return tuple(f.strip() for f in form.get(key, "").split(",") if f.strip())

    try:
        port = int(form.get("port") or 0)
        poll = int(form.get("poll_interval") or 300)
    except ValueError as exc:
        raise StoreError("port and poll interval must be whole numbers") from exc
    return AccountSpec(
        email=form.get("email", "").strip(),
        name=form.get("name", "").strip(),
        host=form.get("host", "").strip(),
        port=port,
        security=form.get("security", "tls"),
        username=form.get("username", "").strip(),
        auth=form.get("auth", "password"),
        proxy=form.get("proxy", "").strip() or None,
        include_folders=folders("include_folders"),
        exclude_folders=folders("exclude_folders"),
        poll_interval=poll,
    )


def _form_of(spec: AccountSpec) -> dict[str, str]:
    return {
        "email": spec.email, "name": spec.name, "host": spec.host, "port": str(spec.port),
        "security": spec.security, "username": spec.username, "auth": spec.auth,
        "proxy": spec.proxy or "", "include_folders": ", ".join(spec.include_folders),
        "exclude_folders": ", ".join(spec.exclude_folders),
        "poll_interval": str(spec.poll_interval),
    }  # fmt: skip


async def _rows(service: SyncService) -> list[dict[str, Any]]:
    return [{"account": a, "status": status} for a, status in await service.overview()]


def _start_check(request: Request, options: CheckOptions) -> str:
    """Run a check in the background; its id, for the page that shows its steps."""
    job = CheckJob(new_report(options))
    job.task = asyncio.create_task(run_check(options, job.report))
    job_id = secrets.token_urlsafe(12)
    jobs = _web(request).checks
    jobs[job_id] = job
    while len(jobs) > 50:  # keep the newest
        jobs.pop(next(iter(jobs)))
    return job_id


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return RedirectResponse("/login", status_code=303)


async def _csrf_failed(_request: Request, _exc: Exception) -> Response:
    return HTMLResponse(
        "The form's security token did not match (the page was too old, or came from another "
        "site). Go back, reload the page and send it again.",
        status_code=403,
    )


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    async def home() -> Response:
        return RedirectResponse("/accounts", status_code=303)

    # -- login -------------------------------------------------------------------------------

    @r.get("/login")
    async def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", None, error="")

    @r.post("/login")
    async def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
        throttle = _web(request).throttle
        address = request.client.host if request.client else "?"
        wait = throttle.retry_after(address)
        if wait:
            refused = page(
                request, "login.html", None, code=429,
                error=f"Too many wrong tokens from this address: try again in {wait:.0f} s.",
            )  # fmt: skip
            refused.headers["Retry-After"] = str(int(wait) + 1)
            return refused
        found = await _service(request).store.check_token(token.strip()) if token else None
        if found is None:
            throttle.failed(address)
            return page(
                request, "login.html", None, code=401,
                error="That token is not valid. Use the token serve printed when it first "
                "started, or make one with 'imapscope tokens create NAME'.",
            )  # fmt: skip
        throttle.succeeded(address)
        sid = secrets.token_urlsafe(32)
        sessions = _web(request).sessions
        now = dt.datetime.now(dt.UTC)
        for old_sid in [k for k, v in sessions.items() if v.expires < now]:
            del sessions[old_sid]  # expired sessions go when someone logs in
        sessions[sid] = Session(
            found.id, secrets.token_urlsafe(32), dt.datetime.now(dt.UTC) + SESSION_LIFETIME
        )
        response = RedirectResponse("/accounts", status_code=303)
        response.set_cookie(
            COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https",
            max_age=int(SESSION_LIFETIME.total_seconds()),
        )  # fmt: skip
        return response

    @r.post("/logout")
    async def logout(request: Request, s: Sess) -> Response:
        _web(request).sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # -- the accounts page and its live parts ------------------------------------------------

    @r.get("/accounts")
    async def accounts(request: Request, s: Sess) -> HTMLResponse:
        rows = await _rows(_service(request))
        return page(request, "accounts.html", s, rows=rows)

    @r.get("/ui/accounts/rows")
    async def account_rows(request: Request, s: Sess) -> HTMLResponse:
        rows = await _rows(_service(request))
        return page(request, "_rows.html", s, rows=rows)

    @r.get("/ui/accounts/{account_id}/modal")
    async def sync_modal(request: Request, account_id: int, s: Sess) -> HTMLResponse:
        service = _service(request)
        account = await service.store.account(account_id)
        return page(
            request, "_modal.html", s, account=account,
            status=await service.status(account),
            errors=await service.store.errors(account_id),
        )  # fmt: skip

    # -- add, edit, pause, delete --------------------------------------------------------------

    @r.get("/accounts/new")
    async def new_form(request: Request, s: Sess) -> HTMLResponse:
        blank = {"port": "993", "security": "tls", "poll_interval": "300", "auth": "password"}
        return page(request, "account_form.html", s, form=blank, report=None, error="",
                    account=None)  # fmt: skip

    async def _save(request: Request, s: Session, account: AccountView | None) -> Response:
        service = _service(request)
        form = {k: str(v) for k, v in (await request.form()).items()}
        secret = form.get("secret", "")
        force = form.get("force") == "on"
        report = None
        try:
            spec = _spec(form)
            if form.get("action") == "verify":
                # Verify only: the check runs in the background and its steps appear as they
                # complete (the Check page's mechanism); nothing is saved.
                spec.validate()
                stored = await service.store.secret(account.id) if account else ""
                if not (secret or stored):
                    raise StoreError("enter the password (or token): the login is verified too")
                job_id = _start_check(
                    request, check_options(spec, secret or stored, service.options)
                )
                form.pop("secret", None)
                job = _web(request).checks[job_id]
                return page(request, "account_form.html", s, form=form, report=None, error="",
                            account=account, job=job, job_id=job_id)  # fmt: skip
            if account is None:
                saved = await service.add(spec, secret, force=force)
            else:
                saved = await service.update(account.id, spec, secret or None, force=force)
        except VerifyError as exc:
            report, error = exc.report, str(exc)
        except StoreError as exc:
            error = str(exc)
        else:
            return RedirectResponse(f"/accounts/{saved.id}", status_code=303)
        form.pop("secret", None)  # never sent back into the page
        return page(request, "account_form.html", s, code=422, form=form, report=report,
                    error=error, account=account)  # fmt: skip

    @r.post("/accounts/new")
    async def add(request: Request, s: Sess) -> Response:
        return await _save(request, s, None)

    @r.get("/accounts/{account_id}/edit")
    async def edit_form(request: Request, account_id: int, s: Sess) -> HTMLResponse:
        account = await _service(request).store.account(account_id)
        return page(request, "account_form.html", s, form=_form_of(account.spec), report=None,
                    error="", account=account)  # fmt: skip

    @r.post("/accounts/{account_id}/edit")
    async def edit(request: Request, account_id: int, s: Sess) -> Response:
        account = await _service(request).store.account(account_id)
        return await _save(request, s, account)

    @r.post("/accounts/{account_id}/{action}")
    async def act(request: Request, account_id: int, action: str, s: Sess) -> Response:
        service = _service(request)
        if action == "delete":
            await service.remove(account_id)
            return RedirectResponse("/accounts", status_code=303)
        if action not in ("pause", "resume"):
            return HTMLResponse(f"unknown action {action!r}", status_code=404)
        await service.pause(account_id, action == "pause")
        return RedirectResponse(f"/accounts/{account_id}", status_code=303)

    @r.get("/accounts/{account_id}")
    async def account_page(request: Request, account_id: int, s: Sess) -> HTMLResponse:
        service = _service(request)
        account = await service.store.account(account_id)
        folders = await service.store.folder_counts(account_id)
        total, recent = await service.store.messages(account_id, limit=25)
        return page(
            request, "account.html", s, account=account, folders=folders, recent=recent,
            total=total, status=await service.status(account),
            errors=await service.store.errors(account_id),
        )  # fmt: skip

    # -- check -----------------------------------------------------------------------------

    @r.get("/check")
    async def check_form(request: Request, s: Sess) -> HTMLResponse:
        return page(request, "check.html", s, job=None, job_id="", form={"security": "auto"})

    @r.post("/check")
    async def start_check(request: Request, s: Sess) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        service = _service(request)
        try:
            port = int(form["port"]) if form.get("port") else None
        except ValueError:
            return page(request, "check.html", s, code=422, job=None, job_id="", form=form,
                        error="the port must be a whole number")  # fmt: skip
        if not form.get("host", "").strip():
            return page(request, "check.html", s, code=422, job=None, job_id="", form=form,
                        error="give the server's host name")  # fmt: skip
        options = CheckOptions(
            host=form["host"].strip(), port=port, security=form.get("security", "auto"),
            user=form.get("user") or None, password=form.get("password") or None,
            ca_file=service.options.ca_file, insecure=service.options.insecure,
            timeout=service.options.timeout,
        )  # fmt: skip
        job_id = _start_check(request, options)
        return RedirectResponse(f"/check/{job_id}", status_code=303)

    def _job(request: Request, job_id: str) -> CheckJob:
        job = _web(request).checks.get(job_id)
        if job is None:
            raise NotFoundError("no such check (they are kept in memory: run it again)")
        return job

    @r.get("/check/{job_id}")
    async def check_page(request: Request, job_id: str, s: Sess) -> HTMLResponse:
        job = _job(request, job_id)
        return page(request, "check.html", s, job=job, job_id=job_id, form={},
                    catalogue=CATALOGUE)  # fmt: skip

    @r.get("/ui/check/{job_id}")
    async def check_steps(request: Request, job_id: str, s: Sess) -> HTMLResponse:
        job = _job(request, job_id)
        return page(request, "_check.html", s, job=job, job_id=job_id, catalogue=CATALOGUE)

    return r


def install(app: Any) -> None:
    """Mount the UI on ``app``: its routes, static files and error pages."""
    app.include_router(router())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CSRFError, _csrf_failed)
    api_handler = app.exception_handlers[StoreError]  # JSON, for /api/v1

    async def store_error(request: Request, exc: Exception) -> Response:
        """On the UI's pages a missing account (say) is an HTML page, not the API's JSON."""
        if request.url.path.startswith(("/api/", "/livez", "/readyz")):
            return await api_handler(request, exc)  # type: ignore[no-any-return]
        status = 404 if isinstance(exc, NotFoundError) else 400
        return page(request, "error.html", None, code=status, message=str(exc))

    app.add_exception_handler(StoreError, store_error)
    http_handler = app.exception_handlers[StarletteHTTPException]  # JSON, for /api/v1

    async def http_error(request: Request, exc: Exception) -> Response:
        """An unknown page of the UI is an HTML page that says where to go."""
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith(("/api/", "/livez", "/readyz", "/static/")):
            return await http_handler(request, exc)  # type: ignore[no-any-return]
        message = (
            "There is no such page. The accounts are at /accounts."
            if exc.status_code == 404
            else f"{request.method} is not allowed here."
        )
        return page(request, "error.html", None, code=exc.status_code, message=message)

    app.add_exception_handler(StarletteHTTPException, http_error)
