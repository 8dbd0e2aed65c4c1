"""``/api/v1/monitors``, ``/channels``, ``/incidents``, ``/maintenance`` and
``/alert-defaults``: watching over time (docs/monitors.md). The monitors run in the service's
:class:`~imapscope.monitor.MonitorService`; these routes edit what it reads, and read what it
wrote."""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imapscope.api._models import MAX_ID, valid_host
from imapscope.monitor import MonitorService, Rules, prepare, send_test
from imapscope.store import (
    MIN_INTERVAL,
    ChannelView,
    IncidentView,
    MonitorSpec,
    MonitorView,
    Stats,
    StoreError,
    jsonable,
)

MonitorId = Annotated[int, Path(ge=1, le=MAX_ID, description="the monitor's id")]
ChannelId = Annotated[int, Path(ge=1, le=MAX_ID, description="the channel's id")]
WindowId = Annotated[int, Path(ge=1, le=MAX_ID, description="the maintenance window's id")]
ChannelIds = list[Annotated[int, Field(ge=1, le=MAX_ID)]]
#: The periods a monitor's statistics are given for.
PERIODS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7),
           "30d": dt.timedelta(days=30), "365d": dt.timedelta(days=365)}  # fmt: skip


class RulesIn(BaseModel):
    """Alert rules (each optional: unset ones come from the global defaults)."""

    model_config = ConfigDict(extra="forbid")

    fail_after: int | None = Field(None, description="failures in a row that open an incident")
    recover_after: int | None = Field(None, description="successes in a row that resolve it")
    remind_every: int | None = Field(None, description="seconds between reminders while open")
    escalate_after: int | None = Field(
        None, description="seconds after opening to notify the escalation channels"
    )
    flap_changes: int | None = Field(None, description="result changes that mean flapping")
    flap_window: int | None = Field(None, description="seconds the changes are counted over")

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class SmtpIn(BaseModel):
    """Where a round trip submits its message (its password is the monitor's ``password``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535, description="default: 587, 465 or 25")
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = Field(None, max_length=320, description="none: no login")
    sender: str = Field(alias="from", min_length=3, max_length=320)
    deadline: int = Field(300, description="seconds to wait for the message (10-3600)")

    _host = field_validator("host")(valid_host)

    def settings(self) -> dict[str, Any]:
        found = {"host": self.host, "security": self.security, "user": self.user,
                 "from": self.sender, "deadline": self.deadline}  # fmt: skip
        return found | ({"port": self.port} if self.port else {})


class MonitorIn(BaseModel):
    """A monitor: the check ladder every ``interval`` seconds against a registered account
    (``account_id``) or any server (``host``, with or without credentials); or (``kind:
    roundtrip``) a message submitted over ``smtp`` to a registered account and watched until
    it arrives; or (``kind: sync``) a registered account's sync health, as the sync engine
    keeps it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["check", "roundtrip", "sync"] = "check"
    smtp: SmtpIn | None = None
    account_id: int | None = Field(None, ge=1, le=MAX_ID)
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["auto", "tls", "starttls", "none"] = "auto"
    username: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=8000, repr=False)
    interval: int = Field(300, description=f"seconds between runs ({MIN_INTERVAL} or more)")
    write_tests: bool = False
    group: str = Field("", max_length=100)
    channels: ChannelIds = Field([], max_length=50)
    escalation_channels: ChannelIds = Field([], max_length=50)
    rules: RulesIn = Field(default_factory=lambda: RulesIn.model_validate({}))

    _host = field_validator("host")(lambda v: None if v is None else valid_host(v))

    def spec(self) -> MonitorSpec:
        return MonitorSpec(
            name=self.name, kind=self.kind, account_id=self.account_id, host=self.host,
            port=self.port, security=self.security, username=self.username,
            interval=self.interval, write_tests=self.write_tests, group=self.group,
            channels=tuple(self.channels), escalation_channels=tuple(self.escalation_channels),
            rules=self.rules.given(), smtp=self.smtp.settings() if self.smtp else {},
        )  # fmt: skip


class MonitorPatch(BaseModel):
    """Some of a monitor's settings; ``password: ""`` removes the stored one."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["auto", "tls", "starttls", "none"] | None = None
    username: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=8000, repr=False)
    interval: int | None = None
    write_tests: bool | None = None
    group: str | None = Field(None, max_length=100)
    channels: ChannelIds | None = Field(None, max_length=50)
    escalation_channels: ChannelIds | None = Field(None, max_length=50)
    rules: RulesIn | None = None

    _host = field_validator("host")(lambda v: None if v is None else valid_host(v))


class ChannelIn(BaseModel):
    """A notification channel: an Apprise URL (mailto://, slack://, ntfy://, ...) or a
    webhook URL (kind ``webhook``: signed JSON; the signing secret is returned once)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["apprise", "webhook"] = "apprise"
    url: str = Field(min_length=1, max_length=2000, repr=False)


class StatusPageIn(BaseModel):
    """A public, read-only status page of a monitor group (no login)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("Service status", min_length=1, max_length=200)
    show_targets: bool = Field(
        False, description="also show each monitor's server (hidden by default)"
    )


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts: dt.datetime
    ends: dt.datetime
    monitor_id: int | None = Field(None, ge=1, le=MAX_ID, description="none: every monitor")
    weekly: bool = Field(False, description="repeat every 7 days")
    reason: str = Field("", max_length=500)


def monitor_out(monitor: MonitorView) -> dict[str, Any]:
    spec = monitor.spec
    alert = monitor.alert
    return {
        "id": monitor.id, "name": spec.name, "kind": spec.kind, "account_id": spec.account_id,
        "host": spec.host, "port": spec.port, "security": spec.security,
        "username": spec.username, "has_password": monitor.has_secret,
        "interval": spec.interval, "write_tests": spec.write_tests, "group": spec.group,
        "channels": list(spec.channels), "escalation_channels": list(spec.escalation_channels),
        "rules": spec.rules, "smtp": spec.smtp or None, "paused": monitor.paused,
        "state": monitor.state,
        "code": alert.get("code"), "incident": alert.get("incident"),
        "flapping": bool(alert.get("flapping")),
        "next_run": monitor.next_run.isoformat() if monitor.next_run else None,
        "created": monitor.created.isoformat(),
    }  # fmt: skip


def incident_out(incident: IncidentView, now: dt.datetime) -> dict[str, Any]:
    return jsonable(incident) | {"duration_s": round(incident.duration(now), 1)}


def stats_out(stats: Stats) -> dict[str, Any]:
    return {
        "since": stats.since.isoformat(), "until": stats.until.isoformat(),
        "runs": stats.runs, "failures": stats.failures, "maintenance": stats.maintenance,
        "uptime": stats.uptime,
        "steps": {name: dataclasses.asdict(s) for name, s in stats.steps.items()},
        "codes": stats.codes,
    }  # fmt: skip


def channel_out(channel: ChannelView, failed: int = 0) -> dict[str, Any]:
    return jsonable(channel) | {"failed_notifications": failed}


def monitors_of(request: Request) -> MonitorService:
    """The app's monitor service (API and UI alike)."""
    found = request.app.state.monitors
    assert isinstance(found, MonitorService)
    return found


def monitors_router() -> APIRouter:
    router = APIRouter()

    # -- monitors ------------------------------------------------------------------------------

    @router.get("/monitors", tags=["monitors"])
    async def list_monitors(request: Request) -> list[dict[str, Any]]:
        return [monitor_out(m) for m in await monitors_of(request).store.monitors()]

    @router.post("/monitors", status_code=201, tags=["monitors"])
    async def add_monitor(request: Request, body: MonitorIn) -> dict[str, Any]:
        """Add a monitor; its first run comes within a minute (or its interval)."""
        monitors = monitors_of(request)
        Rules.of(await monitors.store.alert_defaults(), body.rules.given())
        if (
            body.kind == "check"
            and body.account_id is not None
            and (body.username or body.password)
        ):
            raise StoreError("a monitor of a registered account uses the account's user and "
                             "password; leave username and password out")  # fmt: skip
        added = await monitors.store.add_monitor(body.spec(), body.password, now=monitors.clock())
        monitors.wake()
        return monitor_out(added)

    @router.get("/monitors/{monitor_id}", tags=["monitors"])
    async def get_monitor(request: Request, monitor_id: MonitorId) -> dict[str, Any]:
        return monitor_out(await monitors_of(request).store.monitor(monitor_id))

    @router.patch("/monitors/{monitor_id}", tags=["monitors"])
    async def edit_monitor(
        request: Request, monitor_id: MonitorId, body: MonitorPatch
    ) -> dict[str, Any]:
        monitors = monitors_of(request)
        current = await monitors.store.monitor(monitor_id)
        given = body.model_dump(exclude_unset=True, exclude={"password", "rules"})
        # null means "remove" where there can be none (port, user); elsewhere it changes nothing.
        given = {k: v for k, v in given.items() if v is not None or k in ("port", "username")}
        for name in ("channels", "escalation_channels"):
            if name in given:
                given[name] = tuple(given[name])
        rules = current.spec.rules if body.rules is None else body.rules.given()
        spec = dataclasses.replace(current.spec, **given, rules=rules)
        Rules.of(await monitors.store.alert_defaults(), spec.rules)
        updated = await monitors.store.update_monitor(
            monitor_id, spec, body.password or None, clear_secret=body.password == ""
        )
        return monitor_out(updated)

    @router.delete("/monitors/{monitor_id}", status_code=204, tags=["monitors"])
    async def delete_monitor(request: Request, monitor_id: MonitorId) -> None:
        """Delete the monitor with its history and incidents."""
        await monitors_of(request).store.remove_monitor(monitor_id)

    @router.post("/monitors/{monitor_id}/pause", tags=["monitors"])
    async def pause_monitor(request: Request, monitor_id: MonitorId) -> dict[str, Any]:
        monitors = monitors_of(request)
        return monitor_out(
            await monitors.store.set_monitor_paused(monitor_id, True, now=monitors.clock())
        )

    @router.post("/monitors/{monitor_id}/resume", tags=["monitors"])
    async def resume_monitor(request: Request, monitor_id: MonitorId) -> dict[str, Any]:
        monitors = monitors_of(request)
        resumed = await monitors.store.set_monitor_paused(monitor_id, False, now=monitors.clock())
        monitors.wake()
        return monitor_out(resumed)

    @router.post("/monitors/{monitor_id}/run", tags=["monitors"])
    async def run_now(request: Request, monitor_id: MonitorId) -> dict[str, Any]:
        """Make the next run due now (its schedule then goes on from there)."""
        monitors = monitors_of(request)
        found = await monitors.store.run_monitor_now(monitor_id, now=monitors.clock())
        monitors.wake()
        return monitor_out(found)

    @router.get("/monitors/{monitor_id}/runs", tags=["monitors"])
    async def runs(
        request: Request, monitor_id: MonitorId,
        since: Annotated[dt.datetime | None, Query(description="only runs from then")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Raw runs (kept 30 days), newest first: status, headline code, each step's time."""
        found = await monitors_of(request).store.runs(monitor_id, since=since, limit=limit)
        return [
            jsonable(r) | {"steps": [{"name": n, "status": s, "ms": ms} for n, s, ms in r.steps]}
            for r in found
        ]

    @router.get("/monitors/{monitor_id}/stats", tags=["monitors"])
    async def stats(request: Request, monitor_id: MonitorId) -> dict[str, Any]:
        """Uptime % and per-step p50/p95/p99/max over the last 24 h, 7 d, 30 d and 365 d."""
        monitors = monitors_of(request)
        await monitors.store.monitor(monitor_id)
        now = monitors.clock()
        return {
            name: stats_out(await monitors.store.stats(monitor_id, now - span, now))
            for name, span in PERIODS.items()
        }

    @router.get("/monitors/{monitor_id}/incidents", tags=["monitors"])
    async def monitor_incidents(request: Request, monitor_id: MonitorId) -> list[dict[str, Any]]:
        monitors = monitors_of(request)
        now = monitors.clock()
        return [incident_out(i, now) for i in await monitors.store.incidents(monitor_id)]

    @router.get("/incidents", tags=["monitors"])
    async def incidents(
        request: Request,
        open: Annotated[bool, Query(description="only those still open")] = False,
    ) -> list[dict[str, Any]]:
        monitors = monitors_of(request)
        now = monitors.clock()
        return [incident_out(i, now) for i in await monitors.store.incidents(open_only=open)]

    # -- alert defaults --------------------------------------------------------------------------

    @router.get("/alert-defaults", tags=["monitors"])
    async def get_defaults(request: Request) -> dict[str, Any]:
        """The global alert rules (each monitor's own rules override them)."""
        return Rules.of(await monitors_of(request).store.alert_defaults()).to_json()

    @router.put("/alert-defaults", tags=["monitors"])
    async def put_defaults(request: Request, body: RulesIn) -> dict[str, Any]:
        store = monitors_of(request).store
        rules = Rules.of(body.given())
        await store.set_alert_defaults(body.given())
        return rules.to_json()

    # -- channels --------------------------------------------------------------------------------

    @router.get("/channels", tags=["channels"])
    async def list_channels(request: Request) -> list[dict[str, Any]]:
        store = monitors_of(request).store
        failed = await store.notification_failures()
        return [channel_out(c, failed.get(c.id, 0)) for c in await store.channels()]

    @router.post("/channels", status_code=201, tags=["channels"])
    async def add_channel(request: Request, body: ChannelIn) -> dict[str, Any]:
        """Add a channel. A webhook's signing secret is in this answer only."""
        shown, signing = prepare(body.kind, body.url)
        added = await monitors_of(request).store.add_channel(
            body.name, body.kind, body.url.strip(), shown, signing
        )
        return channel_out(added) | ({"signing_secret": signing} if signing else {})

    @router.get("/channels/{channel_id}", tags=["channels"])
    async def get_channel(request: Request, channel_id: ChannelId) -> dict[str, Any]:
        store = monitors_of(request).store
        failed = await store.notification_failures()
        return channel_out(await store.channel(channel_id), failed.get(channel_id, 0))

    @router.delete("/channels/{channel_id}", status_code=204, tags=["channels"])
    async def delete_channel(request: Request, channel_id: ChannelId) -> None:
        await monitors_of(request).store.remove_channel(channel_id)

    @router.post("/channels/{channel_id}/test", tags=["channels"])
    async def test_channel(
        request: Request, channel_id: ChannelId, response: Response
    ) -> dict[str, Any]:
        """Send a test notification now; 502 with the reason when it did not arrive."""
        monitors = monitors_of(request)
        logged = await send_test(monitors.store, channel_id, public_url=monitors.public_url)
        if logged.status != "sent":
            response.status_code = 502
        return {"sent": logged.status == "sent", "error": logged.last_error or None,
                "notification": logged.id}  # fmt: skip

    @router.get("/channels/{channel_id}/notifications", tags=["channels"])
    async def channel_log(
        request: Request, channel_id: ChannelId,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The channel's notifications, newest first, with their attempts and last error."""
        found = await monitors_of(request).store.notifications(channel_id=channel_id, limit=limit)
        return [jsonable(n) for n in found]

    # -- status pages ----------------------------------------------------------------------------

    @router.get("/status-pages", tags=["monitors"])
    async def status_pages(request: Request) -> dict[str, Any]:
        """The published status pages, by group (each at /status/{group}, without login)."""
        return await monitors_of(request).store.status_pages()

    @router.put("/status-pages/{group}", tags=["monitors"])
    async def publish(
        request: Request, group: Annotated[str, Path(min_length=1, max_length=100)],
        body: StatusPageIn,
    ) -> dict[str, Any]:  # fmt: skip
        """Publish a group's status page: its monitors' state, uptime and incidents, for
        anyone (no secrets; servers only with ``show_targets``)."""
        await monitors_of(request).store.set_status_page(group, body.model_dump())
        return body.model_dump() | {"path": f"/status/{urllib.parse.quote(group, safe='')}"}

    @router.delete("/status-pages/{group}", status_code=204, tags=["monitors"])
    async def withdraw(
        request: Request, group: Annotated[str, Path(min_length=1, max_length=100)]
    ) -> None:
        await monitors_of(request).store.set_status_page(group, None)

    # -- maintenance -----------------------------------------------------------------------------

    @router.get("/maintenance", tags=["monitors"])
    async def list_windows(request: Request) -> list[dict[str, Any]]:
        return [jsonable(w) for w in await monitors_of(request).store.maintenance_windows()]

    @router.post("/maintenance", status_code=201, tags=["monitors"])
    async def add_window(request: Request, body: MaintenanceIn) -> dict[str, Any]:
        """A maintenance window: runs in it raise no alert and do not count against uptime."""
        added = await monitors_of(request).store.add_maintenance(
            body.starts, body.ends, monitor_id=body.monitor_id, weekly=body.weekly,
            reason=body.reason,
        )  # fmt: skip
        return jsonable(added)

    @router.delete("/maintenance/{window_id}", status_code=204, tags=["monitors"])
    async def delete_window(request: Request, window_id: WindowId) -> None:
        await monitors_of(request).store.remove_maintenance(window_id)

    return router
