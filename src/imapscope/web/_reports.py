"""The reports page: a period's report (uptime, incidents, MTTR, time per step) for all or some
monitors, with the same report to download as PDF, CSV, JSON or HTML."""

from __future__ import annotations

import datetime as dt
import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from imapscope.api._monitors import monitors_of
from imapscope.api._reports import make_report
from imapscope.monitor._report import FORMATS, PERIODS, file_name, render
from imapscope.store import StoreError
from imapscope.web._common import Sess, page


def _choice(request: Request) -> tuple[str, dt.datetime | None, dt.datetime | None, list[int]]:
    """The period and monitors asked for in the query; ValueError says what is wrong."""
    query = request.query_params
    name = query.get("period", "7d")
    if name not in PERIODS:
        raise ValueError(f"period {name!r} is unknown: choose {', '.join(PERIODS)}")

    def day(field: str) -> dt.datetime | None:
        text = query.get(field, "")
        if not text:
            return None
        try:
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        except ValueError:
            raise ValueError(f"{field} {text!r} is not a date (YYYY-MM-DD)") from None

    try:
        monitors = [int(m) for m in query.getlist("monitor")]
    except ValueError:
        raise ValueError("monitors are given by their numbers") from None
    return name, day("since"), day("until"), monitors


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/reports")
    async def reports(request: Request, s: Sess) -> HTMLResponse:
        monitors = monitors_of(request)
        every = await monitors.store.monitors()
        query = str(request.url.query)
        try:
            name, since, until, chosen = _choice(request)
            made = await make_report(monitors, name, since, until, chosen)
        except (StoreError, ValueError) as exc:
            return page(request, "reports.html", s, code=422, report=None, error=str(exc),
                        monitors=every, query=query, params=request.query_params)  # fmt: skip
        return page(request, "reports.html", s, report=made, error="", monitors=every,
                    query=query, params=request.query_params)  # fmt: skip

    @r.get("/reports/file")
    async def download(request: Request, s: Sess) -> Response:
        form = request.query_params.get("format", "pdf")
        if form not in FORMATS:
            raise StoreError(f"format {form!r} is unknown: use {', '.join(FORMATS)}")
        name, since, until, chosen = _choice(request)
        made = await make_report(monitors_of(request), name, since, until, chosen)
        disposition = "inline" if form == "html" else "attachment"
        quoted = urllib.parse.quote(file_name(made, form))
        headers = {"Content-Disposition": f'{disposition}; filename="{quoted}"'}
        return Response(render(made, form), media_type=FORMATS[form], headers=headers)

    return r
