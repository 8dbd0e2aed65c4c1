"""The sync engine: one supervisor per account mirrors folders and message metadata into the
store, names its running state, and records every error with a finding code from ``check``;
:class:`SyncService` runs many of them in one process, in step with the store.

What a supervisor does: connect, STARTTLS or TLS, LOGIN or XOAUTH2, folder list with
include/exclude filters, initial sync in batches with progress, incremental sync (CONDSTORE's
CHANGEDSINCE for flags when offered, otherwise a flag refresh; new mail above the highest known
UID; expunges by count), UIDVALIDITY reset, IDLE on INBOX (re-issued before 29 minutes) with
polling of the other folders, capped exponential backoff with jitter, and a stop after repeated
authentication failures. QRESYNC is not used (CONDSTORE plus the count covers the same ground
with one more round trip when something was expunged).
"""

from imapscope.sync._engine import (
    MAX_FETCHED,
    STATES,
    AccountSync,
    Backoff,
    Fetcher,
    NewMailHook,
    SyncFailure,
    SyncOptions,
    check_options,
    connect,
    fetch_message,
    read_message,
)
from imapscope.sync._service import (
    FAILING_STATES,
    HEALTH_WINDOW,
    SyncService,
    VerifyError,
    health,
)

__all__ = [
    "FAILING_STATES",
    "HEALTH_WINDOW",
    "MAX_FETCHED",
    "STATES",
    "AccountSync",
    "Backoff",
    "Fetcher",
    "NewMailHook",
    "SyncFailure",
    "SyncOptions",
    "SyncService",
    "VerifyError",
    "check_options",
    "connect",
    "fetch_message",
    "health",
    "read_message",
]
