"""The schema, as SQLAlchemy 2 declarative models. Alembic migrations must match it (tested)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A moment, stored in UTC, read back aware (in UTC) from either database. SQLite keeps no
    offset: an aware time in another zone (an IMAP INTERNALDATE in the server's, "+0100") was
    stored as its wall-clock time and read back as UTC, an hour off, and sorted among the others
    by that; and it hands back naive times, which the reader had to mark as UTC itself.
    PostgreSQL's timestamptz converts both ways by itself; converting first changes nothing
    there. A naive time is taken as UTC, as before."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None and value.utcoffset():
            return value.astimezone(dt.UTC)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        # 64 bits everywhere: ids and cursors (the API takes up to 2**63 - 1), UIDs and
        # UIDVALIDITY (32-bit unsigned), HIGHESTMODSEQ (63-bit). SQLite's INTEGER holds 64 bits
        # and must stay INTEGER for a primary key to be the rowid; PostgreSQL's integer is 32.
        int: BigInteger().with_variant(Integer(), "sqlite"),
        dict[str, Any]: JSON,
        list[str]: JSON,
        dt.datetime: UtcDateTime(),  # timestamptz on PostgreSQL; UTC everywhere
    }


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int]
    security: Mapped[str] = mapped_column(String(16))  # tls | starttls | none
    username: Mapped[str] = mapped_column(String(320))
    auth: Mapped[str] = mapped_column(String(16))  # password | oauth2
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # Fernet token, never plaintext
    proxy: Mapped[str | None] = mapped_column(String(500), default=None)
    include_folders: Mapped[list[str]] = mapped_column(default=list)
    exclude_folders: Mapped[list[str]] = mapped_column(default=list)
    poll_interval: Mapped[int] = mapped_column(default=300)  # seconds
    # Trust for this account's server, besides the system's CAs: CA certificates (PEM), or
    # the SHA-256 of the server's own certificate (hex), which is then all that is checked.
    ca_pem: Mapped[str | None] = mapped_column(Text, default=None)
    pin_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    paused: Mapped[bool] = mapped_column(default=False)
    # Bumped by every edit, pause and resume: how a `serve` process notices changes made by
    # another process (the CLI, another worker) and restarts that account's supervisor.
    revision: Mapped[int] = mapped_column(default=1)
    state: Mapped[str] = mapped_column(String(32), default="connecting")
    state_since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sync: Mapped[dt.datetime | None] = mapped_column(default=None)
    # When the worker syncing it tries again, or why it does not (``halted``), so that every
    # worker's API and UI can say so.
    next_attempt: Mapped[dt.datetime | None] = mapped_column(default=None)
    halted: Mapped[str | None] = mapped_column(String(300), default=None)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int | None] = mapped_column(default=None)
    uidnext: Mapped[int | None] = mapped_column(default=None)
    highestmodseq: Mapped[int | None] = mapped_column(default=None)
    complete: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The server's message count with the UIDNEXT and HIGHESTMODSEQ above, once everything up
    # to them is stored (None meanwhile): a STATUS that says the same of all of them (and the
    # same UIDVALIDITY) means nothing changed.
    messages: Mapped[int | None] = mapped_column(default=None)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_folder_date", "folder_id", "internaldate"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int]
    flags: Mapped[list[str]] = mapped_column(default=list)
    internaldate: Mapped[dt.datetime | None] = mapped_column(default=None)
    size: Mapped[int | None] = mapped_column(default=None)
    envelope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Copied out of flags and envelope so that lists filter in SQL on SQLite and PostgreSQL alike.
    seen: Mapped[bool] = mapped_column(default=False)
    subject: Mapped[str] = mapped_column(String(1000), default="")
    sender: Mapped[str] = mapped_column(String(1000), default="")


class ErrorEntry(Base):
    __tablename__ = "errors"
    __table_args__ = (Index("ix_errors_account_at", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(2000))
    server_text: Mapped[str] = mapped_column(String(2000), default="")
    fix: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    evidence: Mapped[list[str]] = mapped_column(default=list, server_default="[]")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = ({"sqlite_autoincrement": True},)  # SQLite would otherwise reuse a freed id

    id: Mapped[int] = mapped_column(primary_key=True)  # the consumers' cursor: only ever grows
    # None: an event of no account (the incident of a monitor of any server).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    """An API token; only its SHA-256 is kept (the token itself is shown once, at creation)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used: Mapped[dt.datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A web UI login: the cookie's SHA-256 (never the cookie), the token it was made with
    (revoking the token ends it), its CSRF token and expiry."""

    __tablename__ = "web_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    expires: Mapped[dt.datetime]


class Setting(Base):
    """A value the store keeps about itself (the key check)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class CheckRun(Base):
    """A check started from the web UI: its report's JSON as it fills (any worker shows it)."""

    __tablename__ = "check_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done: Mapped[bool] = mapped_column(default=False)
    back: Mapped[str] = mapped_column(String(300), default="")
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Worker(Base):
    """A running ``serve`` process; its heartbeat says it is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """Who syncs an account: ``owner`` (a worker) until ``expires``; ``epoch`` grows with each
    new owner, and every write for the account carries it (fencing)."""

    __tablename__ = "leases"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str | None] = mapped_column(String(100), default=None)
    epoch: Mapped[int] = mapped_column(default=0)
    expires: Mapped[dt.datetime | None] = mapped_column(default=None)


class Job(Base):
    """Work to be done once across workers (a scheduled check, a notification, a webhook
    delivery): claimed for a while by one worker, then done, or retried."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "done", "run_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(300), unique=True, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    done: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(String(2000), default="")


class Monitor(Base):
    """Something watched on a schedule: the check ladder against a registered account or any
    host (``kind`` check), or a message's round trip (``kind`` roundtrip). ``alert`` is the
    incident engine's state (see :mod:`imapscope.monitor._rules`); ``rules`` its overrides of
    the global defaults."""

    __tablename__ = "monitors"
    # SQLite would otherwise give a deleted monitor's id to the next one, and its run job's
    # key (monitor:<id>) and notifications' references with it.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # check | roundtrip
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), default=None
    )
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    port: Mapped[int | None] = mapped_column(default=None)
    security: Mapped[str] = mapped_column(String(16), default="auto")
    username: Mapped[str | None] = mapped_column(String(320), default=None)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # sealed
    interval: Mapped[int] = mapped_column(default=300)  # seconds
    write_tests: Mapped[bool] = mapped_column(default=False)
    paused: Mapped[bool] = mapped_column(default=False)
    group: Mapped[str] = mapped_column(String(100), default="")
    channels: Mapped[list[int]] = mapped_column(JSON, default=list)
    escalation_channels: Mapped[list[int]] = mapped_column(JSON, default=list)
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    alert: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A round trip's sending side: host, port, security, user, from, deadline (its password is
    # ``secret``).
    smtp: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MonitorRun(Base):
    """One run of a monitor: its outcome, headline code and each step's status and time."""

    __tablename__ = "monitor_runs"
    __table_args__ = (Index("ix_monitor_runs_monitor_at", "monitor_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))  # ok | warning | fail
    code: Mapped[str | None] = mapped_column(String(64), default=None)
    summary: Mapped[str] = mapped_column(String(2000), default="")
    fix: Mapped[str] = mapped_column(String(2000), default="")
    evidence: Mapped[list[str]] = mapped_column(default=list)
    total_ms: Mapped[float] = mapped_column(default=0.0)
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[name, status, ms], ...]
    maintenance: Mapped[bool] = mapped_column(default=False)
    late_ms: Mapped[float] = mapped_column(default=0.0)  # started this long after it was due
    worker: Mapped[str] = mapped_column(String(100), default="")  # which worker ran it


class Incident(Base):
    """A monitor's outage: opened after N failures in a row, resolved after M successes."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_monitor_opened", "monitor_id", "opened"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"))
    opened: Mapped[dt.datetime]
    resolved: Mapped[dt.datetime | None] = mapped_column(default=None)
    codes: Mapped[list[str]] = mapped_column(default=list)  # every headline code, in order
    summary: Mapped[str] = mapped_column(String(2000), default="")


class Channel(Base):
    """Where notifications go: an Apprise URL, or a signed JSON webhook (``kind`` webhook).
    The URL often carries a token or password, so it is sealed like the accounts' secrets."""

    __tablename__ = "channels"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids are never given again

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # apprise | webhook
    url: Mapped[bytes] = mapped_column(LargeBinary)  # sealed
    shown: Mapped[str] = mapped_column(String(500))  # the URL with its secrets masked
    signing_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # sealed
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """One message to one channel, sent by a ``notify`` job (once across workers), with its
    attempts: a failing channel's notifications stay visible here."""

    __tablename__ = "notifications"
    # Never reused ids: a notification's job is keyed by its id (notify:<id>).
    __table_args__ = (
        Index("ix_notifications_channel", "channel_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    monitor_id: Mapped[int | None] = mapped_column(
        ForeignKey("monitors.id", ondelete="SET NULL"), default=None
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(32))
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(default=0)
    sent: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(String(2000), default="")
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)  # title, body, data


class Maintenance(Base):
    """A maintenance window (for one monitor, or all when ``monitor_id`` is empty): runs in it
    raise no alert and do not count against uptime. ``weekly`` repeats it every 7 days."""

    __tablename__ = "maintenance"

    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int | None] = mapped_column(
        ForeignKey("monitors.id", ondelete="CASCADE"), default=None
    )
    starts: Mapped[dt.datetime]
    ends: Mapped[dt.datetime]
    weekly: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(String(500), default="")


class MonitorHour(Base):
    """One monitor's runs of one hour, rolled up once the hour is over (kept for a year and a
    month, past the raw runs' month): counts, and per step a latency histogram from which
    percentiles of any period are read (see :mod:`imapscope.store._history`)."""

    __tablename__ = "monitor_hours"

    monitor_id: Mapped[int] = mapped_column(
        ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[dt.datetime] = mapped_column(primary_key=True)
    runs: Mapped[int] = mapped_column(default=0)  # outside maintenance
    failures: Mapped[int] = mapped_column(default=0)
    maintenance: Mapped[int] = mapped_column(default=0)
    steps: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> {n, p50, p95, max, h}
    codes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # headline code -> runs


class MonitorDay(Base):
    """One monitor's hours of one day (UTC) folded together, as :class:`MonitorHour`: what a
    year's report reads, 365 rows a monitor instead of 8,760."""

    __tablename__ = "monitor_days"

    monitor_id: Mapped[int] = mapped_column(
        ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.datetime] = mapped_column(primary_key=True)
    runs: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)
    maintenance: Mapped[int] = mapped_column(default=0)
    steps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    codes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReportSchedule(Base):
    """A report made every week or month and sent through channels."""

    __tablename__ = "report_schedules"
    __table_args__ = ({"sqlite_autoincrement": True},)  # its job is keyed by its id

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    every: Mapped[str] = mapped_column(String(16))  # week | month
    format: Mapped[str] = mapped_column(String(16))  # pdf | html | csv | json
    channels: Mapped[list[int]] = mapped_column(JSON, default=list)
    monitors: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty: all
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Expectation(Base):
    """A test's wait for a message: criteria, the folders watched and, for each, the UIDNEXT
    the server reported at registration (only UIDs from there on can match); then the matched
    message (its text, links, codes, attachments) or the near misses seen meanwhile."""

    __tablename__ = "expectations"
    __table_args__ = (
        Index("ix_expectations_state", "state", "account_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    criteria: Mapped[dict[str, Any]] = mapped_column(default=dict)
    folders: Mapped[list[str]] = mapped_column(default=list)
    exclusive: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires: Mapped[dt.datetime]
    # folder -> the server's UIDNEXT at registration; folder -> the highest UID judged so far
    baseline: Mapped[dict[str, Any]] = mapped_column(default=dict)
    judged: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ended: Mapped[dt.datetime | None] = mapped_column(default=None)
    folder: Mapped[str | None] = mapped_column(String(1000), default=None)
    uid: Mapped[int | None] = mapped_column(default=None)
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    near_misses: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ExpectationClaim(Base):
    """A message taken by an exclusive expectation: no other exclusive one can have it."""

    __tablename__ = "expectation_claims"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    folder: Mapped[str] = mapped_column(String(1000), primary_key=True)
    uid: Mapped[int] = mapped_column(primary_key=True)
    expectation_id: Mapped[int] = mapped_column(ForeignKey("expectations.id", ondelete="CASCADE"))


class Webhook(Base):
    """An endpoint that receives events as signed JSON (Standard Webhooks): its URL and signing
    secret sealed; which events and accounts; the secret it replaced, valid until
    ``old_until`` (a rotation); disabled after failing for days."""

    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[bytes] = mapped_column(LargeBinary)  # sealed: URLs carry tokens
    shown: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(default=list)  # empty: every kind
    accounts: Mapped[list[Any]] = mapped_column(JSON, default=list)  # empty: every account
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed
    old_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    old_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str] = mapped_column(String(300), default="")
    # Events up to this id were written before the endpoint existed: not delivered.
    after_event: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint (the outbox row): pending until delivered or given up;
    claimed by one worker at a time."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_at"),
        # One delivery per event and endpoint: two workers fanning out at once cannot both
        # write it (a replay sends the same row again).
        UniqueConstraint("webhook_id", "event_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done: Mapped[dt.datetime | None] = mapped_column(default=None)


class WebhookAttempt(Base):
    """One try of a delivery: when, the HTTP status (none: no answer), how long, and what the
    receiver said (an excerpt, secrets cut)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("ix_webhook_attempts_webhook", "webhook_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(default=None)
    ms: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[str] = mapped_column(String(500), default="")
