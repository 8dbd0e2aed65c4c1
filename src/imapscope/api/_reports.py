"""``/api/v1/reports`` (a report over a period, as JSON, CSV, HTML or PDF) and
``/api/v1/report-schedules`` (reports sent through channels every week or month)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from imapscope.api._models import MAX_ID
from imapscope.api._monitors import monitors_of
from imapscope.monitor import MonitorService
from imapscope.monitor._report import FORMATS, build, file_name, period, render
from imapscope.store import jsonable

ScheduleId = Annotated[int, Path(ge=1, le=MAX_ID, description="the schedule's id")]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    every: Literal["week", "month"]
    format: Literal["pdf", "html", "csv", "json"] = "pdf"
    channels: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=50)
    monitors: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        [], max_length=1000, description="none: every monitor"
    )


async def make_report(
    monitors: MonitorService, name: str, since: dt.datetime | None, until: dt.datetime | None,
    monitor_ids: list[int],
) -> dict[str, Any]:  # fmt: skip
    """The report for a named period (or since/until), for the UI and the API alike."""
    now = monitors.clock()
    start, end = period(name, now, since, until)
    return await build(monitors.store, start, end, now=now, monitor_ids=monitor_ids or None)


def reports_router() -> APIRouter:
    router = APIRouter()

    @router.get("/reports", tags=["reports"])
    async def report(
        request: Request,
        period: Annotated[Literal["week", "month", "7d", "30d", "custom"], Query(
            description="week/month: the last full calendar one; 7d/30d: up to now; custom: "
            "since to until")] = "7d",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        format: Annotated[Literal["json", "csv", "html", "pdf"], Query()] = "json",
        monitor: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Query(
            description="only these monitors (repeat it); none: all")] = [],  # noqa: B006
    ) -> Response:  # fmt: skip
        """Uptime, incidents, MTTR, time per step and round-trip losses over a period, in one
        of four formats made from one data model (docs/monitors.md#reports)."""
        made = await make_report(monitors_of(request), period, since, until, monitor)
        headers = {} if format in ("json", "html") else {
            "Content-Disposition": f'attachment; filename="{file_name(made, format)}"'}  # fmt: skip
        return Response(render(made, format), media_type=FORMATS[format], headers=headers)

    @router.get("/report-schedules", tags=["reports"])
    async def schedules(request: Request) -> list[dict[str, Any]]:
        return [jsonable(s) for s in await monitors_of(request).store.report_schedules()]

    @router.post("/report-schedules", status_code=201, tags=["reports"])
    async def add_schedule(request: Request, body: ScheduleIn) -> dict[str, Any]:
        """Send a report of the last full week (Mondays) or month (on the 1st), 06:00 UTC."""
        monitors = monitors_of(request)
        added = await monitors.store.add_report_schedule(
            body.name, body.every, body.format, body.channels, body.monitors, now=monitors.clock()
        )
        return jsonable(added)

    @router.delete("/report-schedules/{schedule_id}", status_code=204, tags=["reports"])
    async def delete_schedule(request: Request, schedule_id: ScheduleId) -> None:
        await monitors_of(request).store.remove_report_schedule(schedule_id)

    return router
