"""What every UI module shares: templates, the login session (in the database), the CSRF rule,
and the per-process state (running checks, the login throttle, fetched messages)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from imapscope.probe import CATALOGUE, CheckOptions, Report, new_report, run_check
from imapscope.store import NotFoundError, WebSessionView
from imapscope.sync import STATES, SyncService
from imapscope.trust import colon_hex
from imapscope.web._throttle import LoginThrottle

log = logging.getLogger("imapscope.serve")
HERE = Path(__file__).parent
COOKIE = "imapscope_session"
SESSION_LIFETIME = dt.timedelta(hours=12)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["STATES"] = STATES
templates.env.globals["CATALOGUE"] = CATALOGUE
#: Fetched messages kept for the message page and its HTML frame (two requests, one fetch).
MESSAGES_CACHED = 8


def iso(value: dt.datetime | str | None) -> str:
    """A time for a ``<time datetime>``: the browser shows it in its own zone (app.js)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


def utc_text(value: dt.datetime | str | None) -> str:
    """The same time as text, labelled: what shows before app.js runs (and without it)."""
    if value is None:
        return ""
    parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["iso"] = iso
templates.env.filters["utc"] = utc_text
templates.env.filters["colon_hex"] = colon_hex


@dataclass
class CheckJob:
    report: Report
    task: asyncio.Task[Report] | None = None
    back: str = ""  # where "back" goes (the account a stored-settings check is for)
    publisher: asyncio.Task[None] | None = None  # writes the report for the other workers

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()


@dataclass
class WebState:
    """Per process. Check jobs are followed on the worker that runs them."""

    checks: dict[str, CheckJob] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    fetched: OrderedDict[tuple[int, str, int], bytes] = field(default_factory=OrderedDict)


class LoginRequired(Exception):  # noqa: N818 - control flow
    pass


class CSRFError(Exception):
    pass


def web_state(request: Request) -> WebState:
    state = getattr(request.app.state, "web", None)
    if state is None:
        state = request.app.state.web = WebState()
    assert isinstance(state, WebState)
    return state


def service_of(request: Request) -> SyncService:
    service = request.app.state.service
    assert isinstance(service, SyncService)
    return service


async def session(request: Request) -> WebSessionView:
    """The logged-in session; POSTs and htmx requests must carry its CSRF token."""
    found = await service_of(request).store.web_session(request.cookies.get(COOKIE, ""))
    if found is None:
        raise LoginRequired
    if request.method == "POST":
        form = await request.form()
        sent = request.headers.get("X-CSRF-Token") or str(form.get("csrf", ""))
        if not secrets.compare_digest(sent, found.csrf):
            raise CSRFError
    return found


Sess = Annotated[WebSessionView, Depends(session)]


def page(
    request: Request, name: str, s: WebSessionView | None, code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"csrf": s.csrf if s else "", **context}, status_code=code
    )


@dataclass
class StoredCheck:
    """A check run by another worker (or before a restart), as its report's JSON: the pages
    read it the same way (Jinja reads a key as it reads an attribute)."""

    report: dict[str, Any]
    done: bool
    back: str


#: How often a running check's report is written for the other workers.
CHECK_SAVE_EVERY = 0.3


def start_check(request: Request, options: CheckOptions, back: str = "") -> str:
    """Run a check in the background; its id, for the page that shows its steps. Its report is
    written to the store as it fills, so that any worker can show it."""
    job = CheckJob(new_report(options), back=back)
    task = job.task = asyncio.create_task(run_check(options, job.report))
    job_id = secrets.token_urlsafe(12)
    jobs = web_state(request).checks
    jobs[job_id] = job
    while len(jobs) > 50:  # keep the newest here; the store keeps more
        jobs.pop(next(iter(jobs)))
    store = service_of(request).store

    async def publish() -> None:
        while True:
            done = task.done()
            try:
                await store.save_check_run(job_id, job.report.to_json(), done=done, back=back)
            except Exception:  # the page on this worker still has it; others may not
                log.exception("check %s: its report could not be written", job_id)
            if done:
                return
            await asyncio.wait([task], timeout=CHECK_SAVE_EVERY)

    job.publisher = asyncio.create_task(publish())
    return job_id


async def find_check(request: Request, job_id: str) -> CheckJob | StoredCheck:
    """The check on this worker, or as another worker wrote it."""
    job = web_state(request).checks.get(job_id)
    if job is not None:
        return job
    stored = await service_of(request).store.check_run(job_id[:32])
    if stored is None:
        raise NotFoundError("no such check (the newest 200 are kept: run it again)")
    return StoredCheck(stored.report, stored.done, stored.back)
