"""Monitors and what they leave behind: their runs, incidents and the notifications a run
gives, written in one transaction, under the run's job claim (so with several workers each run
is recorded once and each notification queued once).

A monitor has one ``monitor.run`` job (key ``monitor:<id>``), claimed when due and put back
with its next due time in the transaction that records the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update

from imapscope.store._bounds import bounded
from imapscope.store._channels import ChannelsMixin
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._models import (
    Account,
    Channel,
    Event,
    Incident,
    Job,
    Monitor,
    MonitorRun,
)

#: The shortest interval between two runs: a full check ladder takes a second or two, and a
#: server watched every second by many monitors would see it as an attack.
MIN_INTERVAL = 5
MAX_INTERVAL = 7 * 86400
DEFAULT_INTERVAL = 300
MONITOR_KINDS = ("check", "roundtrip", "sync")
SMTP_SECURITY = ("starttls", "tls", "none")
#: The usual port for each way of submitting mail.
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
#: How long a round trip waits for its message before calling it lost.
DEFAULT_DEADLINE = 300
DEADLINE_RANGE = (10, 3600)
MONITOR_SECURITY = ("auto", "tls", "starttls", "none")
RUN_JOB = "monitor.run"
#: A monitor added with ``spread`` (many at once, say) has its first run within this many
#: seconds (or its interval, when shorter), at a random point, so they spread out; otherwise
#: the first run is due at once.
FIRST_RUN_SPREAD = 60
MAX_RUNS_LISTED = 5000
ALERT_DEFAULTS = "alert_defaults"
STATUS_PAGES = "status_pages"


def run_key(monitor_id: int) -> str:
    return f"monitor:{monitor_id}"


@dataclasses.dataclass(frozen=True)
class MonitorSpec:
    """What a user sets up. A password travels separately (sealed when stored)."""

    name: str
    kind: str = "check"
    account_id: int | None = None  # a registered account: its settings and password
    host: str | None = None  # or any server, with or without credentials
    port: int | None = None
    security: str = "auto"
    username: str | None = None
    interval: int = DEFAULT_INTERVAL
    write_tests: bool = False
    group: str = ""
    channels: tuple[int, ...] = ()
    escalation_channels: tuple[int, ...] = ()
    rules: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A round trip's sending side: host, port, security, user, from, deadline (see check_smtp).
    smtp: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not self.name.strip() or len(self.name) > 200:
            raise StoreError("a monitor needs a name of 1-200 characters")
        if self.kind not in MONITOR_KINDS:
            raise StoreError(
                f"monitor kind {self.kind!r} is unknown; use {', '.join(MONITOR_KINDS)}"
            )
        if (self.account_id is None) == (self.host is None):
            raise StoreError("give either account_id (a registered account) or host, not both")
        if self.host is not None and not self.host.strip():
            raise StoreError("host is empty; give the IMAP server's name or address")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise StoreError(
                f"port {self.port} is out of range; use 1-65535 (993 TLS, 143 STARTTLS)"
            )
        if self.security not in MONITOR_SECURITY:
            raise StoreError(
                f"security {self.security!r} is unknown; use {', '.join(MONITOR_SECURITY)}"
            )
        if not MIN_INTERVAL <= self.interval <= MAX_INTERVAL:
            raise StoreError(
                f"interval {self.interval}s is out of range: use {MIN_INTERVAL} seconds to "
                f"{MAX_INTERVAL // 86400} days (default {DEFAULT_INTERVAL})"
            )
        if len(self.group) > 100:
            raise StoreError("a group name has at most 100 characters")
        if self.kind == "sync" and self.account_id is None:
            raise StoreError("a sync monitor watches a registered account's sync: give account_id")
        if self.kind == "roundtrip":
            if self.account_id is None:
                raise StoreError("a round trip sends to a registered account and watches it "
                                 "arrive there: give account_id")  # fmt: skip
            check_smtp(self.smtp)
        elif self.smtp:
            raise StoreError("smtp settings belong to a roundtrip monitor")


def check_smtp(smtp: dict[str, Any]) -> None:
    """A round trip's SMTP settings: ``host``, ``security`` (starttls, tls, none), ``port``
    (default by security), ``user`` (none: no login), ``from`` (the sender address) and
    ``deadline`` (seconds to wait for the message); filled in with the defaults."""
    known = {"host", "port", "security", "user", "from", "deadline"}
    unknown = sorted(set(smtp) - known)
    if unknown:
        raise StoreError(f"unknown smtp setting {unknown[0]!r}: use {', '.join(sorted(known))}")
    if not str(smtp.get("host") or "").strip():
        raise StoreError("smtp.host is empty: give the SMTP submission server's name")
    security = smtp.setdefault("security", "starttls")
    if security not in SMTP_SECURITY:
        raise StoreError(f"smtp.security {security!r} is unknown: use {', '.join(SMTP_SECURITY)}")
    port = smtp.setdefault("port", SMTP_PORTS[security])
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise StoreError(f"smtp.port {port!r} is out of range: use 1-65535 (587, 465 or 25)")
    sender = str(smtp.get("from") or "")
    if "@" not in sender or len(sender) > 320 or any(c in sender for c in "\r\n<> "):
        raise StoreError("smtp.from must be the sender's address (like probe@example.com)")
    smtp.setdefault("user", None)
    deadline = smtp.setdefault("deadline", DEFAULT_DEADLINE)
    low, high = DEADLINE_RANGE
    if not isinstance(deadline, int) or not low <= deadline <= high:
        raise StoreError(f"smtp.deadline {deadline!r}: use a whole number of seconds {low}-{high}")


@dataclasses.dataclass(frozen=True)
class MonitorView:
    id: int
    spec: MonitorSpec
    paused: bool
    has_secret: bool
    alert: dict[str, Any]  # the incident engine's state (imapscope.monitor._rules.AlertState)
    created: dt.datetime
    next_run: dt.datetime | None  # None while paused

    @property
    def state(self) -> str:
        """paused; unknown (no run yet); down (an incident is open); up."""
        if self.paused:
            return "paused"
        if not self.alert:
            return "unknown"
        return "down" if self.alert.get("down") else "up"


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run's outcome, as the runner reports it."""

    at: dt.datetime
    status: str  # ok | warning | fail
    code: str | None = None
    summary: str = ""
    fix: str = ""
    evidence: tuple[str, ...] = ()
    total_ms: float = 0.0
    steps: tuple[tuple[str, str, float], ...] = ()  # (name, status, ms)
    maintenance: bool = False
    late_ms: float = 0.0
    worker: str = ""  # the worker that ran it (filled in when it is recorded)


@dataclasses.dataclass(frozen=True)
class IncidentView:
    id: int
    monitor_id: int
    opened: dt.datetime
    resolved: dt.datetime | None
    codes: tuple[str, ...]
    summary: str

    def duration(self, now: dt.datetime) -> float:
        """Seconds it lasted (so far, while open)."""
        return ((self.resolved or now) - self.opened).total_seconds()


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A notice to send: to the monitor's channels, and its escalation channels too when
    ``escalation``. ``message``: title, body and data (see imapscope.monitor._message)."""

    kind: str
    escalation: bool
    message: dict[str, Any]


def _spec(row: Monitor) -> MonitorSpec:
    return MonitorSpec(
        name=row.name, kind=row.kind, account_id=row.account_id, host=row.host, port=row.port,
        security=row.security, username=row.username, interval=row.interval,
        write_tests=row.write_tests, group=row.group, channels=tuple(row.channels),
        escalation_channels=tuple(row.escalation_channels), rules=dict(row.rules),
        smtp=dict(row.smtp),
    )  # fmt: skip


def _run(row: MonitorRun) -> RunRecord:
    return RunRecord(
        at=row.at, status=row.status, code=row.code, summary=row.summary, fix=row.fix,
        evidence=tuple(row.evidence), total_ms=row.total_ms,
        steps=tuple((str(n), str(s), float(ms)) for n, s, ms in row.steps),
        maintenance=row.maintenance, late_ms=row.late_ms, worker=row.worker,
    )  # fmt: skip


def _incident(row: Incident) -> IncidentView:
    return IncidentView(
        row.id, row.monitor_id, row.opened, row.resolved,
        tuple(row.codes), row.summary,
    )  # fmt: skip


class MonitorsMixin(ChannelsMixin):
    async def _check_references(self, s: Any, spec: MonitorSpec) -> None:
        if spec.account_id is not None and await s.get(Account, spec.account_id) is None:
            raise StoreError(
                f"no account with id {spec.account_id}; list them with 'imapscope accounts list'"
            )
        wanted = set(spec.channels) | set(spec.escalation_channels)
        if wanted:
            found = set(await s.scalars(select(Channel.id).where(Channel.id.in_(wanted))))
            missing = sorted(wanted - found)
            if missing:
                raise StoreError(
                    f"no channel with id {', '.join(map(str, missing))}; list them with "
                    "'imapscope channels list' (or GET /api/v1/channels)"
                )

    async def add_monitor(
        self, spec: MonitorSpec, secret: str | None = None, *, now: dt.datetime,
        spread: bool = False,
    ) -> MonitorView:  # fmt: skip
        """Save a monitor and schedule its first run: at once, or with ``spread`` within
        :data:`FIRST_RUN_SPREAD` (for many added together)."""
        spec.validate()
        async with self._session() as s:
            await self._check_references(s, spec)
            row = Monitor(
                name=spec.name.strip(), kind=spec.kind, account_id=spec.account_id,
                host=spec.host, port=spec.port, security=spec.security,
                username=spec.username, secret=self._box.seal(secret) if secret else None,
                interval=spec.interval, write_tests=spec.write_tests, group=spec.group,
                channels=list(spec.channels), escalation_channels=list(spec.escalation_channels),
                rules=dict(spec.rules), alert={}, smtp=dict(spec.smtp), created=now,
            )  # fmt: skip
            s.add(row)
            await s.flush()
            first = _first_run(row.interval, now) if spread else now
            await self._schedule(s, row.id, first)
            await s.commit()
            return await self._monitor_view(s, row)

    async def _schedule(self, s: Any, monitor_id: int, first: dt.datetime) -> None:
        """(Re)make the monitor's one run job, first due at ``first``."""
        await s.execute(delete(Job).where(Job.key == run_key(monitor_id)))
        s.add(Job(kind=RUN_JOB, key=run_key(monitor_id), payload={"monitor": monitor_id},
                  run_at=first))  # fmt: skip

    async def _monitor_view(self, s: Any, row: Monitor) -> MonitorView:
        due = await s.scalar(select(Job.run_at).where(Job.key == run_key(row.id)))
        return MonitorView(
            row.id, _spec(row), row.paused, row.secret is not None, dict(row.alert),
            row.created, due,
        )  # fmt: skip

    async def _monitor_row(self, s: Any, monitor_id: int) -> Monitor:
        found: Monitor = await self._found(
            s, Monitor, monitor_id,
            f"no monitor with id {monitor_id}; list them with 'imapscope monitors list'",
        )  # fmt: skip
        return found

    async def monitor(self, monitor_id: int) -> MonitorView:
        async with self._session() as s:
            return await self._monitor_view(s, await self._monitor_row(s, monitor_id))

    async def monitors(self) -> list[MonitorView]:
        async with self._session() as s:
            due = dict((await s.execute(
                select(Job.key, Job.run_at).where(Job.kind == RUN_JOB)
            )).all())  # fmt: skip
            rows = await s.scalars(select(Monitor).order_by(Monitor.id))
            return [
                MonitorView(
                    r.id,
                    _spec(r),
                    r.paused,
                    r.secret is not None,
                    dict(r.alert),
                    r.created,
                    due.get(run_key(r.id)),
                )
                for r in rows
            ]

    async def monitor_secret(self, monitor_id: int) -> str | None:
        async with self._session() as s:
            row = await self._monitor_row(s, monitor_id)
            return None if row.secret is None else self._box.open(row.secret)

    async def update_monitor(
        self, monitor_id: int, spec: MonitorSpec, secret: str | None = None, *,
        clear_secret: bool = False,
    ) -> MonitorView:  # fmt: skip
        spec.validate()
        async with self._session() as s:
            row = await self._monitor_row(s, monitor_id)
            await self._check_references(s, spec)
            row.name, row.kind, row.account_id = spec.name.strip(), spec.kind, spec.account_id
            row.host, row.port, row.security = spec.host, spec.port, spec.security
            row.username, row.interval, row.write_tests = (
                spec.username,
                spec.interval,
                spec.write_tests,
            )
            row.group, row.rules, row.smtp = spec.group, dict(spec.rules), dict(spec.smtp)
            row.channels, row.escalation_channels = (
                list(spec.channels),
                list(spec.escalation_channels),
            )
            if secret:
                row.secret = self._box.seal(secret)
            elif clear_secret:
                row.secret = None
            await s.commit()
            return await self._monitor_view(s, row)

    async def set_monitor_paused(
        self, monitor_id: int, paused: bool, *, now: dt.datetime
    ) -> MonitorView:
        """Pause (its run job goes; a run under way is not recorded) or resume (it runs again
        at once)."""
        async with self._session() as s:
            row = await self._monitor_row(s, monitor_id)
            if paused:
                await s.execute(delete(Job).where(Job.key == run_key(monitor_id)))
            elif row.paused:  # resumed (a monitor not paused keeps its schedule)
                await self._schedule(s, row.id, now)
            row.paused = paused
            await s.commit()
            return await self._monitor_view(s, row)

    async def run_monitor_now(self, monitor_id: int, *, now: dt.datetime) -> MonitorView:
        """Make its next run due now (a paused monitor stays paused)."""
        async with self._session() as s:
            row = await self._monitor_row(s, monitor_id)
            if row.paused:
                raise StoreError(f"monitor {monitor_id} is paused; resume it first")
            await s.execute(
                update(Job).where(Job.key == run_key(monitor_id), Job.claimed_by.is_(None))
                .values(run_at=now)
            )  # fmt: skip
            await s.commit()
            return await self._monitor_view(s, row)

    async def remove_monitor(self, monitor_id: int) -> None:
        """Delete a monitor with its runs and incidents (its notifications stay in the
        channels' logs)."""
        async with self._session() as s:
            row = await self._monitor_row(s, monitor_id)
            await s.execute(delete(Job).where(Job.key == run_key(monitor_id)))
            await s.delete(row)
            await s.commit()

    # -- runs ----------------------------------------------------------------------------------

    async def finish_run(
        self, job_id: int, worker: str, monitor_id: int, run: RunRecord, *,
        alert: dict[str, Any], outgoing: Sequence[Outgoing], next_run: dt.datetime,
    ) -> bool:  # fmt: skip
        """Record a run, the monitor's new alert state, its incident's change and the
        notifications to send, and put its job back for ``next_run``: all in one transaction,
        and only while this worker's claim on the job holds (False: it did not; nothing was
        written, another worker runs the monitor now)."""
        async with self._session() as s:
            kept = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker)
                .values(run_at=next_run, claimed_by=None, claimed_until=None, attempts=0)
            )  # fmt: skip
            if not kept.rowcount:  # type: ignore[attr-defined]
                await s.rollback()
                return False
            row = await s.get(Monitor, monitor_id, with_for_update=True)
            if row is None:  # removed meanwhile
                await s.rollback()
                return False
            s.add(MonitorRun(
                monitor_id=monitor_id, at=run.at, status=run.status, code=run.code,
                summary=bounded(run.summary, 2000), fix=bounded(run.fix, 2000),
                evidence=[bounded(e, 500) for e in run.evidence[:10]],
                total_ms=run.total_ms, steps=[list(step) for step in run.steps],
                maintenance=run.maintenance, late_ms=run.late_ms, worker=worker,
            ))  # fmt: skip
            alert = dict(alert)
            incident_id, evented = await self._follow_incident(s, row, alert, run)
            row.alert = alert
            for notice in outgoing:
                message = dict(notice.message)
                message["data"] = dict(message.get("data", {}), incident=incident_id)
                targets = list(row.channels)
                if notice.escalation:
                    targets += [c for c in row.escalation_channels if c not in targets]
                await self._queue(s, targets, notice.kind, message, monitor_id=monitor_id,
                                  incident_id=incident_id, now=run.at)  # fmt: skip
            await s.commit()
            if evented:  # decided before any flush: ``s.new`` is empty again after one
                self.events_written.fire()
            return True

    async def _follow_incident(
        self, s: Any, row: Monitor, alert: dict[str, Any], run: RunRecord
    ) -> tuple[int | None, bool]:
        """Open, extend or resolve the monitor's incident as its alert state went (down, code);
        the incident's id, kept in the state, and whether an incident event was written."""
        evented = False
        was_down = bool(row.alert.get("down"))
        incident_id = row.alert.get("incident") if was_down else None
        if alert.get("down") and not was_down:
            incident = Incident(monitor_id=row.id, opened=run.at, codes=[alert.get("code") or ""],
                                summary=bounded(run.summary, 2000))  # fmt: skip
            s.add(incident)
            await s.flush()
            incident_id = incident.id
            s.add(_incident_event("incident.opened", row, incident, fix=run.fix))
            evented = True
        elif incident_id is not None:
            incident = await s.get(Incident, incident_id)
            if incident is not None:
                code = alert.get("code")
                if alert.get("down") and code and code != (incident.codes or [""])[-1]:
                    incident.codes = [*incident.codes, code]
                    incident.summary = bounded(run.summary, 2000)
                if not alert.get("down"):
                    incident.resolved = run.at
                    s.add(_incident_event("incident.resolved", row, incident))
                    evented = True
        alert["incident"] = incident_id if alert.get("down") else None
        return incident_id, evented

    async def runs(
        self, monitor_id: int, *, since: dt.datetime | None = None, limit: int = 500
    ) -> list[RunRecord]:
        """Raw runs, newest first."""
        async with self._session() as s:
            await self._monitor_row(s, monitor_id)
            query = select(MonitorRun).where(MonitorRun.monitor_id == monitor_id)
            if since is not None:
                query = query.where(MonitorRun.at >= since)
            rows = await s.scalars(
                query.order_by(MonitorRun.at.desc()).limit(min(limit, MAX_RUNS_LISTED))
            )
            return [_run(r) for r in rows]

    async def incidents(
        self, monitor_id: int | None = None, *, open_only: bool = False,
        since: dt.datetime | None = None, limit: int = 200,
    ) -> list[IncidentView]:  # fmt: skip
        """Incidents, newest first (one monitor's, or all)."""
        async with self._session() as s:
            query = select(Incident)
            if monitor_id is not None:
                await self._monitor_row(s, monitor_id)
                query = query.where(Incident.monitor_id == monitor_id)
            if open_only:
                query = query.where(Incident.resolved.is_(None))
            if since is not None:
                query = query.where((Incident.resolved.is_(None)) | (Incident.resolved >= since))
            rows = await s.scalars(query.order_by(Incident.opened.desc()).limit(limit))
            return [_incident(r) for r in rows]

    async def open_incident_count(self) -> int:
        async with self._session() as s:
            found = await s.scalar(
                select(func.count()).select_from(Incident).where(Incident.resolved.is_(None))
            )
            return int(found or 0)

    async def status_pages(self) -> dict[str, dict[str, Any]]:
        """The public status pages, by monitor group: ``title`` and ``show_targets``."""
        async with self._session() as s:
            found = await self._setting(s, STATUS_PAGES)
            return {} if found is None else dict(json.loads(found))

    async def set_status_page(self, group: str, page: dict[str, Any] | None) -> None:
        """Publish (or, with None, withdraw) the status page of a monitor group."""
        if not group.strip() or len(group) > 100:
            raise StoreError("a status page is for a monitor group: give its name (1-100)")
        async with self._session() as s:
            found = await self._setting(s, STATUS_PAGES)
            pages = {} if found is None else dict(json.loads(found))
            if page is None:
                if group not in pages:
                    raise NotFoundError(f"no status page for group {group!r}")
                pages.pop(group)
            else:
                pages[group] = page
            await self._put_setting(s, STATUS_PAGES, json.dumps(pages).encode())
            await s.commit()

    async def alert_defaults(self) -> dict[str, Any]:
        """The alert rules every monitor starts from (its own ``rules`` override them)."""
        async with self._session() as s:
            found = await self._setting(s, ALERT_DEFAULTS)
            return {} if found is None else dict(json.loads(found))

    async def set_alert_defaults(self, rules: dict[str, Any]) -> None:
        """Replace the global alert rules (checked by the caller: imapscope.monitor)."""
        async with self._session() as s:
            await self._put_setting(s, ALERT_DEFAULTS, json.dumps(rules).encode())
            await s.commit()


def _first_run(interval: int, now: dt.datetime) -> dt.datetime:
    spread = min(interval, FIRST_RUN_SPREAD)
    return now + dt.timedelta(seconds=random.uniform(0, spread))  # noqa: S311 - spreading, not secrecy


def _incident_event(kind: str, monitor: Monitor, incident: Incident, fix: str = "") -> Event:
    """The event of an incident opened or resolved (webhooks, the stream), in the run's
    transaction; of the monitor's account, or of none."""
    data: dict[str, Any] = {
        "incident": incident.id, "monitor": monitor.id, "monitor_name": monitor.name,
        "code": (incident.codes or [""])[-1], "codes": list(incident.codes or []),
        "summary": incident.summary, "opened": incident.opened.isoformat(),
    }  # fmt: skip
    if kind == "incident.opened":
        data["fix"] = bounded(fix, 2000)
    if incident.resolved is not None:
        data["resolved"] = incident.resolved.isoformat()
        data["seconds"] = round((incident.resolved - incident.opened).total_seconds())
    return Event(account_id=monitor.account_id, kind=kind, data=data)
