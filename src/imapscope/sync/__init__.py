"""The sync engine: one supervisor per account mirrors folders and message metadata into the
store, names its running state, and records every error with a finding code from ``check``.

Status (first part of issue #6): connect, STARTTLS or TLS, LOGIN or XOAUTH2, folder list with
include/exclude filters, initial and incremental sync by UID (new messages, flag refresh,
expunge detection, UIDVALIDITY reset), IDLE on INBOX (re-issued before 29 minutes) with polling
of the other folders, capped exponential backoff with jitter, and a stop after repeated
authentication failures. CONDSTORE/QRESYNC incremental sync is not used yet.
"""

from imapscope.sync._engine import STATES, AccountSync, Backoff, SyncOptions

__all__ = ["STATES", "AccountSync", "Backoff", "SyncOptions"]
