"""The storage interface: accounts (credentials encrypted), folders, messages, errors, events,
tokens, web sessions, monitors (runs, history, incidents), channels (notifications),
maintenance windows, expectations (the receive API) and webhooks (endpoints, outbox); one
facade, :class:`Store`, over one module per aggregate.

SQLite in the data directory by default (WAL), through SQLAlchemy 2's asyncio layer; the schema
is portable to PostgreSQL. Alembic migrations are applied by :meth:`Store.open`.
"""

from __future__ import annotations

from imapscope.store._accounts import MAX_PAGE, AccountQuery, AccountsMixin
from imapscope.store._channels import (
    CHANNEL_KINDS,
    NOTIFY_JOB,
    NOTIFY_RETRIES,
    ChannelsMixin,
    ChannelView,
    NotificationView,
)
from imapscope.store._checks import CheckRunView, ChecksMixin
from imapscope.store._db import DB_FILE
from imapscope.store._errors import ConflictError, NotFoundError, SecretKeyError, StoreError
from imapscope.store._expectations import (
    EXPECTATION_STATES,
    JUNK_NAMES,
    NEAR_MISSES_KEPT,
    ExpectationsMixin,
    ExpectationView,
)
from imapscope.store._history import (
    BUCKETS_MS,
    HOURS_KEPT,
    RAW_KEPT,
    HistoryMixin,
    Stats,
    StepStats,
)
from imapscope.store._jobs import JobsMixin, JobView
from imapscope.store._leases import Fence, LeaseLostError, LeasesMixin
from imapscope.store._log import ERRORS_KEPT, ERRORS_WINDOW, REDACTED, LogMixin
from imapscope.store._mail import MailMixin
from imapscope.store._maintenance import MaintenanceMixin, MaintenanceView
from imapscope.store._monitors import (
    MIN_INTERVAL,
    MONITOR_KINDS,
    MONITOR_SECURITY,
    RUN_JOB,
    IncidentView,
    MonitorsMixin,
    MonitorSpec,
    MonitorView,
    Outgoing,
    RunRecord,
)
from imapscope.store._reports import (
    REPORT_EVERY,
    REPORT_FORMATS,
    REPORT_JOB,
    ReportScheduleView,
    ReportsMixin,
    next_report,
)
from imapscope.store._tokens import TokensMixin
from imapscope.store._views import (
    AUTH_KINDS,
    SECURITY_MODES,
    AccountSpec,
    AccountView,
    ErrorView,
    EventView,
    FolderView,
    MessageMeta,
    MessageView,
    Summary,
    TokenView,
    jsonable,
)
from imapscope.store._web_sessions import WebSessionsMixin, WebSessionView
from imapscope.store._webhooks import (
    DELIVERY_STATES,
    RETRIES,
    AttemptView,
    DeliveryView,
    Outcome,
    WebhooksMixin,
    WebhookView,
)

__all__ = [
    "AUTH_KINDS",
    "BUCKETS_MS",
    "CHANNEL_KINDS",
    "DB_FILE",
    "DELIVERY_STATES",
    "ERRORS_KEPT",
    "ERRORS_WINDOW",
    "EXPECTATION_STATES",
    "HOURS_KEPT",
    "JUNK_NAMES",
    "MAX_PAGE",
    "MIN_INTERVAL",
    "MONITOR_KINDS",
    "MONITOR_SECURITY",
    "NEAR_MISSES_KEPT",
    "NOTIFY_JOB",
    "NOTIFY_RETRIES",
    "RAW_KEPT",
    "REDACTED",
    "REPORT_EVERY",
    "REPORT_FORMATS",
    "REPORT_JOB",
    "RETRIES",
    "RUN_JOB",
    "SECURITY_MODES",
    "AccountQuery",
    "AccountSpec",
    "AccountView",
    "AttemptView",
    "ChannelView",
    "CheckRunView",
    "ConflictError",
    "DeliveryView",
    "ErrorView",
    "EventView",
    "ExpectationView",
    "Fence",
    "FolderView",
    "IncidentView",
    "JobView",
    "LeaseLostError",
    "MaintenanceView",
    "MessageMeta",
    "MessageView",
    "MonitorSpec",
    "MonitorView",
    "NotFoundError",
    "NotificationView",
    "Outcome",
    "Outgoing",
    "ReportScheduleView",
    "RunRecord",
    "SecretKeyError",
    "Stats",
    "StepStats",
    "Store",
    "StoreError",
    "Summary",
    "TokenView",
    "WebSessionView",
    "WebhookView",
    "jsonable",
    "next_report",
]  # fmt: skip


class Store(
    AccountsMixin,
    MailMixin,
    LogMixin,
    TokensMixin,
    WebSessionsMixin,
    ChecksMixin,
    LeasesMixin,
    JobsMixin,
    MonitorsMixin,
    ChannelsMixin,
    MaintenanceMixin,
    HistoryMixin,
    ReportsMixin,
    ExpectationsMixin,
    WebhooksMixin,
):
    """The store: every aggregate's operations on one database (see :mod:`._db`)."""
