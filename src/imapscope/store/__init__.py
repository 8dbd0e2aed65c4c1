"""The storage interface: accounts (credentials encrypted), folders, messages, errors, events,
tokens, web sessions; one facade, :class:`Store`, over one module per aggregate.

SQLite in the data directory by default (WAL), through SQLAlchemy 2's asyncio layer; the schema
is portable to PostgreSQL. Alembic migrations are applied by :meth:`Store.open`.
"""

from __future__ import annotations

from imapscope.store._accounts import AccountsMixin
from imapscope.store._checks import CheckRunView, ChecksMixin
from imapscope.store._db import DB_FILE
from imapscope.store._errors import ConflictError, NotFoundError, SecretKeyError, StoreError
from imapscope.store._jobs import JobsMixin, JobView
from imapscope.store._leases import Fence, LeaseLostError, LeasesMixin
from imapscope.store._log import ERRORS_KEPT, ERRORS_WINDOW, REDACTED, LogMixin
from imapscope.store._mail import MailMixin
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

__all__ = [
    "AUTH_KINDS",
    "DB_FILE",
    "ERRORS_KEPT",
    "ERRORS_WINDOW",
    "REDACTED",
    "SECURITY_MODES",
    "AccountSpec",
    "AccountView",
    "CheckRunView",
    "ConflictError",
    "ErrorView",
    "EventView",
    "Fence",
    "FolderView",
    "JobView",
    "LeaseLostError",
    "MessageMeta",
    "MessageView",
    "NotFoundError",
    "SecretKeyError",
    "Store",
    "StoreError",
    "Summary",
    "TokenView",
    "WebSessionView",
    "jsonable",
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
):
    """The store: every aggregate's operations on one database (see :mod:`._db`)."""
