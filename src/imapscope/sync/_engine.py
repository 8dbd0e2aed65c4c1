"""One account's supervisor: connect, sync, IDLE, reconnect; states and errors go to the store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from imapscope.findings import Finding, finding
from imapscope.imap import ContinuationRequest as Continue
from imapscope.imap import (
    Exists,
    ExpungeResponse,
    Fetch,
    FetchResponse,
    Idle,
    List,
    ListResponse,
    ProtocolError,
    Search,
    SearchResponse,
    Status,
    StatusResponse,
    UntaggedStatus,
    compact_sequence,
)
from imapscope.net import ImapConnection, NetError, Result
from imapscope.probe import CheckOptions
from imapscope.session import (
    SessionFailure,
    Settings,
    classify_mailbox,
    classify_net_error,
    mailbox_command,
    open_session,
    select,
)
from imapscope.store import (
    AccountSpec,
    AccountView,
    Fence,
    FolderView,
    LeaseLostError,
    MessageMeta,
    SecretKeyError,
    Store,
)

log = logging.getLogger("imapscope.serve")

# "disabled": the account cannot run until it is edited (its stored secret cannot be decrypted).
STATES = (
    "connecting", "syncing", "idle", "backoff", "auth_error", "connect_error", "paused", "disabled",
)  # fmt: skip
AUTH_CODES = frozenset({
    "AUTH_FAILED", "APP_PASSWORD_REQUIRED", "WEB_LOGIN_REQUIRED", "BASIC_AUTH_DISABLED",
    "IMAP_DISABLED_FOR_ACCOUNT", "CREDENTIAL_EXPIRED_OR_LOCKED", "OAUTH_TOKEN_REJECTED",
    "PLAINTEXT_LOGIN_REFUSED", "AUTH_MECH_UNSUPPORTED", "STORED_SECRET_UNREADABLE",
})  # fmt: skip
FETCH_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"
#: Lines of its transcript a synced account's connection keeps (a failure is named from the
#: last lines the server sent; the connection may live for days).
TRANSCRIPT_KEPT = 20
_JITTER = random.Random()  # noqa: S311 - jitter, not security
#: The largest message fetched whole (the web UI's message page, the receive API).
MAX_FETCHED = 25 * 1024 * 1024
#: While an expectation watches a folder other than INBOX (IDLE covers INBOX alone), the
#: other folders are synced this often (seconds).
WATCH_POLL = 1.0


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter; reset after a stable connection."""

    first: float = 1.0
    cap: float = 300.0
    stable_after: float = 60.0

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.0) * float(min(self.cap, self.first * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class SyncOptions:
    ca_file: str | None = None
    insecure: bool = False
    timeout: float = 10.0
    idle_renew: float = 29 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes
    max_auth_failures: int = 3
    backoff: Backoff = Backoff()
    batch: int = 2000  # messages per FETCH in an initial sync
    #: A whole FETCH batch's response must come within this (each other step: ``timeout``).
    fetch_deadline: float = 120.0
    #: Seconds a worker's lease on an account lasts without a heartbeat (renewed every third of
    #: it): how long the accounts of a worker that died wait before another one takes them.
    lease_ttl: float = 30.0
    #: Workers started together (``serve --workers N``): during their first lease time each
    #: claims only its share of N, instead of all the accounts before the others are up.
    started_together: int = 1
    #: Bytes one command's response may bring (a batch of metadata is a few MB at most).
    byte_budget: int = 64 * 1024 * 1024
    #: Accounts of one process opening their connection (TCP, TLS, greeting, login) at the same
    #: time; the others wait their turn, a wait their ``timeout`` does not count. Thousands at
    #: once (a start, a network back) only made servers too slow to greet them in time: with
    #: 1,000 accounts on one Dovecot, 429-652 attempts failed SERVER_SILENT and were retried.
    connecting: int = 100


class SyncFailure(Exception):  # noqa: N818 - carries a finding, not a bug
    """A failure named with a finding code from the catalogue (the session path's classifier
    named it). ``connected``: it came after the connection and login had succeeded."""

    connected = False

    def __init__(self, found: Finding) -> None:
        super().__init__(found.summary)
        self.finding = found


def _unstored(held: Set[int], known: Mapping[int, object], highest: int) -> list[int]:
    """The UIDs up to ``highest`` the server holds and the store lacks, in order."""
    return sorted(u for u in held if u <= highest and u not in known)


def _kept(flags: Sequence[str] | None) -> tuple[str, ...]:
    """A message's flags as stored: without ``\\Recent``, which belongs to one session (the
    first to select the folder since the message came; RFC 9051 dropped it). Kept, it would
    be a flag change each time another client opened the folder."""
    if not flags:
        return ()
    return tuple(f for f in flags if f.lower() != "\\recent")


def _changed_flags(
    responses: Sequence[Any], known: dict[int, tuple[str, ...]]
) -> dict[int, tuple[str, ...]]:
    found = {e.uid: _kept(e.flags) for e in responses if isinstance(e, FetchResponse) and e.uid}
    return {uid: f for uid, f in found.items() if uid in known and f != known[uid]}


def _events(
    folder: str, reset: bool, new: Sequence[MessageMeta],
    flags: dict[int, tuple[str, ...]], gone: Sequence[int],
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """The events one folder sync produces (stored with the change itself)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if reset:
        found.append(("folder.reset", {"folder": folder}))
    for m in new:
        found.append(("message.new", {"folder": folder, "uid": m.uid,
                                      "subject": m.envelope.get("subject"),
                                      "envelope": m.envelope}))  # fmt: skip
    for uid, value in flags.items():
        found.append(("message.flags", {"folder": folder, "uid": uid, "flags": list(value)}))
    for uid in gone:
        found.append(("message.expunged", {"folder": folder, "uid": uid}))
    return found


def check_options(spec: AccountSpec, secret: str, options: SyncOptions) -> CheckOptions:
    """The check ladder's options for a registered (or about to be) account. The engine's own
    session settings derive from them (:func:`settings`): verify-before-save and the running
    account connect the same way."""
    oauth2 = spec.auth == "oauth2"
    return CheckOptions(
        host=spec.host, port=spec.port, security=spec.security,
        user=spec.username, password=None if oauth2 else secret,
        oauth2_token=secret if oauth2 else None, ca_file=options.ca_file,
        insecure=options.insecure, timeout=options.timeout, proxy=spec.proxy,
        ca_pem=spec.ca_pem, pin_sha256=spec.pin_sha256,
    )  # fmt: skip


def settings(account: AccountView, secret: str, options: SyncOptions) -> Settings:
    """The session path's settings for a registered account (those ``check`` uses)."""
    check = check_options(account.spec, secret, options)
    return dataclasses.replace(
        check.settings(check.security, account.spec.port), byte_budget=options.byte_budget
    )


async def connect(store: Store, account: AccountView, options: SyncOptions) -> ImapConnection:
    """A logged-in connection for the account through the session path ``check`` uses, or a
    :class:`SyncFailure` naming what broke the same way ``check`` names it."""
    secret = await store.secret(account.id)  # unreadable: no point connecting
    try:
        opened = await open_session(settings(account, secret, options))
    except SessionFailure as exc:
        raise SyncFailure(exc.finding) from exc
    return opened.connection


async def fetch_message(
    store: Store, account: AccountView, folder: str, uid: int, options: SyncOptions,
    *, max_size: int = MAX_FETCHED,
) -> bytes:  # fmt: skip
    """One message's full text, fetched live from the server (read-only: \\Seen is kept)."""
    conn = await connect(store, account, options)
    try:
        await select(conn, folder, readonly=True)
        return await read_message(conn, folder, uid, max_size=max_size)
    except SessionFailure as exc:
        raise SyncFailure(exc.finding) from exc
    except (NetError, ProtocolError) as exc:
        raise SyncFailure(classify_net_error(exc, "fetch", conn.transcript)) from exc
    finally:
        await conn.close()


async def read_message(
    conn: ImapConnection, folder: str, uid: int, *, max_size: int = MAX_FETCHED,
    size: int | None = None,
) -> bytes:  # fmt: skip
    """One message's full text over a connection with ``folder`` selected (BODY.PEEK: the
    \\Seen flag is kept); :class:`LookupError` when it is gone or over ``max_size``. A
    ``size`` already known (stored by the sync) spares asking the server for it."""
    if size is None:
        asked = await conn.run(Fetch(str(uid), "(RFC822.SIZE)", uid=True))
        sizes = [e.size for e in asked.untagged if isinstance(e, FetchResponse) and e.uid == uid]
        if not sizes:
            raise LookupError(f"no message with UID {uid} in {folder!r} on the server")
        size = sizes[0] or 0
    if size > max_size:
        raise LookupError(f"the message is {size} bytes, over the {max_size} byte limit")
    result = await conn.run(Fetch(str(uid), "(BODY.PEEK[])", uid=True))
    for e in result.untagged:
        if isinstance(e, FetchResponse) and e.uid == uid:
            body = e.sections.get("BODY[]")
            if body is not None:
                return bytes(body)
    raise LookupError(f"the server returned no body for UID {uid} in {folder!r}")


#: Reads one message of the folder just synced (by UID, with its size when it is known): what
#: a new-mail hook is given.
Fetcher = Callable[[int, int | None], Awaitable[bytes]]
#: Called after a folder's sync stored new messages, or while the folder is watched:
#: (account id, folder, fetcher, whether this was the folder's first full sync).
NewMailHook = Callable[[int, str, Fetcher, bool], Awaitable[None]]


def _status_items(conn: ImapConnection) -> tuple[str, ...]:
    """What a STATUS asks to tell a folder unchanged since its last sync."""
    modseq = ("HIGHESTMODSEQ",) if "CONDSTORE" in conn.codec.capabilities else ()
    return ("MESSAGES", "UIDNEXT", "UIDVALIDITY", *modseq)


def _selected(result: Result) -> dict[str, int | None]:
    """What a SELECT or EXAMINE said: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (None when not
    said) and MESSAGES (EXISTS), keyed as a STATUS answer is."""
    found: dict[str, int | None] = dict.fromkeys(("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"))
    found["MESSAGES"] = 0
    for e in result.untagged:
        if isinstance(e, Exists):
            found["MESSAGES"] = e.count
        elif (isinstance(e, UntaggedStatus) and e.code is not None
                and e.code.name in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ")):  # fmt: skip
            found[e.code.name] = int(str(e.code.value))
    return found


def _decidable(folder: FolderView) -> bool:
    """A STATUS can spare this folder its SELECT: it was synced to the end (and may be
    unchanged), or never (and may be empty)."""
    return folder.uidvalidity is None or (folder.complete and folder.messages is not None)


def _unchanged(folder: FolderView, status: Mapping[str, int | None]) -> bool:
    """What STATUS (or SELECT) says equals what the folder's last sync stored: the same
    UIDVALIDITY, UIDNEXT and message count, and the same HIGHESTMODSEQ (every flag change and,
    with UIDNEXT and the count, every expunge and arrival moves one of them). An empty folder
    needs no HIGHESTMODSEQ: it has no flags to change. Anything unknown is a change."""
    if not folder.complete or folder.messages is None or folder.uidnext is None:
        return False
    if (status.get("UIDVALIDITY"), status.get("UIDNEXT"), status.get("MESSAGES")) != (
        folder.uidvalidity, folder.uidnext, folder.messages
    ):  # fmt: skip
        return False
    if folder.messages == 0:
        return True
    return folder.highestmodseq is not None and status.get("HIGHESTMODSEQ") == folder.highestmodseq


class AccountSync:
    """Run with :meth:`run` (until cancelled); :meth:`wake` after an edit or resume."""

    def __init__(
        self, store: Store, account_id: int, options: SyncOptions | None = None,
        fence: Fence | None = None, gate: asyncio.Semaphore | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        # Shared by the process's supervisors: at most SyncOptions.connecting connect at once.
        self.gate = gate
        self.account_id = account_id
        # The lease this supervisor syncs under (several workers): every write carries it, and
        # the first one refused ends the supervisor (LeaseLostError): another worker has it.
        self.fence = fence
        self.lost = False
        self.options = options or SyncOptions()
        self._wake = asyncio.Event()
        self._idle_read: asyncio.Future[Any] | None = None
        # The store holds self.state with no retry time and no halt (nothing to write again).
        self._stored_plain = False
        self._full_due = False  # sync_everything() was asked for
        self._rng = _JITTER  # one generator for all: each holds 2.5 KiB of state
        # UIDs a FETCH was refused for and the error log has, by (folder, UIDVALIDITY): asked
        # for again at later syncs, reported once. None until there are any.
        self._refused: dict[tuple[str, int], set[int]] | None = None
        self.state = "connecting"
        # Live status, for the UI's sync modal (the store has the durable part).
        # (When the next attempt is due, or why there is none, are in the store: every worker
        # shows them.)
        self.progress: dict[str, Any] = {}  # folder, done, total of the folder being synced
        self.connected_since: dt.datetime | None = None
        # Folders besides INBOX someone waits on (the receive API): polled every WATCH_POLL.
        self.watch: frozenset[str] = frozenset()
        # Judges new mail against waiting expectations (set by the receive API).
        self.on_new_mail: NewMailHook | None = None

    def sync_everything(self) -> None:
        """Sync every folder now, not at the next poll (a folder may have changed elsewhere)."""
        self._full_due = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()
        if self._idle_read is not None:
            self._idle_read.cancel()  # out of IDLE now, not at the end of the round

    async def _set(
        self, state: str, *, next_attempt: dt.datetime | None = None, halted: str | None = None,
        synced: bool = False,
    ) -> None:  # fmt: skip
        """Store the running state (``synced``: and that every folder was just synced)."""
        plain = next_attempt is None and halted is None
        if state == self.state and plain and self._stored_plain and not synced:
            return  # what the store holds already (only this supervisor writes it)
        self.state = state
        self._stored_plain = False  # until the write is done
        # With its event, when it changed; the retry schedule with it.
        await self.store.set_state(
            self.account_id, state, next_attempt=next_attempt, halted=halted, fence=self.fence,
            synced=synced,
        )  # fmt: skip
        self._stored_plain = plain

    async def run(self) -> None:
        """Sync until cancelled, or until the lease is lost (another worker has the account)."""
        try:
            await self._run()
        except LeaseLostError as exc:
            self.lost = True
            log.info("%s; this worker stops syncing it", exc)

    async def _run(self) -> None:
        failures = auth_failures = 0
        while True:
            account = await self.store.account(self.account_id)
            if not self._stored_plain and account.state == self.state and (
                account.next_attempt is None and account.halted is None
            ):  # fmt: skip
                # What the store holds already (a first start finds "connecting" there):
                # writing it again would be a transaction that changes nothing.
                self._stored_plain = True
            if account.paused:
                await self._set("paused")
                await self._wait_wake(None)
                continue
            # A retry keeps the failure's name (auth_error, connect_error, backoff) until an
            # attempt succeeds: the badge does not flicker to "connecting" and back. Its
            # schedule is over, though.
            await self._set(self.state if failures else "connecting")
            started = time.monotonic()
            try:
                try:
                    await self._session(account)
                except (SyncFailure, SecretKeyError, LeaseLostError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    # A bug of ours, not the server's: logged with an id that the error entry
                    # carries, then retried with backoff like any failure (never a silent loop).
                    error_id = uuid.uuid4().hex[:12]
                    log.exception("account %s: internal error %s", self.account_id, error_id)
                    raise SyncFailure(finding(
                        "INTERNAL_ERROR", "sync",
                        evidence=[f"error id {error_id}: {type(exc).__name__}"],
                    )) from exc  # fmt: skip
            except SyncFailure as exc:
                stable = time.monotonic() - started >= self.options.backoff.stable_after
                failures = 1 if stable else failures + 1
                code = exc.finding.code
                auth = code in AUTH_CODES
                auth_failures = auth_failures + 1 if auth else 0
                # The state names why it waits: auth_error, connect_error (could not connect),
                # backoff (was connected, then lost the connection or hit an error).
                state = "auth_error" if auth else "backoff" if exc.connected else "connect_error"
                # The error first: whoever sees the state finds its error in the log.
                await self._record(state, exc.finding)
                if auth and auth_failures >= self.options.max_auth_failures:
                    # No hammering a locked account: wait in auth_error until edited or resumed.
                    halted = (
                        f"{auth_failures} refused logins in a row: edit the account or resume it"
                    )
                    await self._set(state, halted=halted)
                    await self._wait_wake(None)
                    failures = auth_failures = 0
                    continue
                delay = self.options.backoff.delay(failures, self._rng)
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
                await self._set(state, next_attempt=due)
                await self._wait_wake(delay)
            except SecretKeyError as exc:
                # The data directory's key cannot open this account's secret (the key was
                # replaced): nothing to retry until the account is edited with a new password.
                found = finding("STORED_SECRET_UNREADABLE", "authenticate", evidence=[str(exc)])
                await self._record("disabled", found)
                await self._set(
                    "disabled", halted="the stored password cannot be decrypted: edit the account"
                )
                await self._wait_wake(None)

    async def _record(self, state: str, found: Finding) -> None:
        """One error entry: the finding as ``check`` reports it (code, summary, fix, evidence)."""
        await self.store.record_error(
            self.account_id, state=state, step=found.step, code=found.code,
            message=found.summary, server_text=" ".join(found.evidence), fix=found.fix,
            evidence=found.evidence, fence=self.fence,
        )  # fmt: skip

    async def _wait_wake(self, timeout: float | None) -> None:
        """Sleep until :meth:`wake` or ``timeout``; a wake that came meanwhile is not lost."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # lands as its timeout fires (cpython#86296), and the supervisor would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    # -- one connection ------------------------------------------------------------------------

    async def _connect(self, account: AccountView) -> ImapConnection:
        async with self.gate or contextlib.nullcontext():
            return await connect(self.store, account, self.options)

    async def _session(self, account: AccountView) -> None:
        conn = await self._connect(account)
        conn.keep_last(TRANSCRIPT_KEPT)
        self.connected_since = dt.datetime.now(dt.UTC)
        try:
            await self._set("syncing")
            await self._idle_loop(conn, account)
        except SyncFailure as exc:
            exc.connected = True
            raise
        except SessionFailure as exc:
            failure = SyncFailure(exc.finding)
            failure.connected = True
            raise failure from exc
        except (NetError, ProtocolError) as exc:
            failure = SyncFailure(classify_net_error(exc, "sync", conn.transcript))
            failure.connected = True
            raise failure from exc
        finally:
            self.connected_since = None
            self.progress = {}
            await conn.close()

    async def _folders(
        self, conn: ImapConnection, account: AccountView
    ) -> tuple[list[str], dict[str, dict[str, int]]]:
        """The folders to sync, and the STATUS of those the server gave it for with the list
        (LIST-STATUS, RFC 5819). A refused LIST fails the sync: an empty answer taken for "no
        folders" would drop every stored one."""
        listed = "LIST-STATUS" in conn.codec.capabilities
        returns = (f"STATUS ({' '.join(_status_items(conn))})",) if listed else ()
        result = await mailbox_command(conn, List("", "*", returns=returns), "list")
        names = [
            e.name
            for e in result.untagged
            if isinstance(e, ListResponse) and "\\noselect" not in {a.lower() for a in e.attributes}
            and "\\nonexistent" not in {a.lower() for a in e.attributes}
        ]  # fmt: skip
        spec = account.spec
        if spec.include_folders:
            names = [n for n in names if n in spec.include_folders or n.upper() == "INBOX"]
        names = [n for n in names if n not in spec.exclude_folders]
        statuses = {e.mailbox: e.items for e in result.untagged if isinstance(e, StatusResponse)}
        return names, statuses

    async def _statuses(
        self, conn: ImapConnection, names: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """STATUS of each folder, pipelined, when the server can tell a folder unchanged by it
        (CONDSTORE: HIGHESTMODSEQ moves with every flag change); else nothing (each folder is
        selected, and judged on what SELECT says). A refused STATUS leaves the folder to its
        SELECT, which names the refusal."""
        if not names or "CONDSTORE" not in conn.codec.capabilities:
            return {}
        items = _status_items(conn)
        found: dict[str, dict[str, int]] = {}
        async for completed in conn.run_pipelined(
            (Status(name, items) for name in names), depth=min(len(names), 50)
        ):
            for e in completed.untagged:
                if isinstance(e, StatusResponse) and completed.ok:
                    found[e.mailbox] = e.items
        return found

    async def _sync_all(
        self, conn: ImapConnection, account: AccountView, only: Set[str] | None = None
    ) -> tuple[bool, FolderView | None]:
        """Sync every folder (or those in ``only``, with INBOX), INBOX last so it stays
        selected for IDLE. Returns whether INBOX changed while it was being synced (sync it
        again before idling), and INBOX as stored before (None: the server has none). The
        caller records the account synced (``last_sync``), with its next state.

        A folder whose STATUS (MESSAGES, UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ) equals what was
        stored at the end of its last sync is not selected: nothing in it changed (a flag
        change moves HIGHESTMODSEQ; without CONDSTORE only an empty folder is judged so). A
        folder never synced that STATUS says is empty is stored as synced, unselected. INBOX
        is always selected (it is idled on), and skipped the same way once selected."""
        if only is None:
            names, statuses = await self._folders(conn, account)
            # With folder.added/removed events; the folders as stored now.
            stored = await self.store.set_folders(self.account_id, names, fence=self.fence)
        else:
            stored = await self.store.folders(self.account_id)
            statuses = {}
        folders = sorted(
            (f for f in stored if only is None or f.name in only or f.name == "INBOX"),
            key=lambda f: f.name == "INBOX",
        )  # fmt: skip
        if not statuses:
            statuses = await self._statuses(
                conn, [f.name for f in folders if f.name != "INBOX" and _decidable(f)]
            )
        empty = {
            f.name: status for f in folders
            if f.name != "INBOX" and (status := statuses.get(f.name)) is not None
            and f.uidvalidity is None and status.get("MESSAGES") == 0
            and status.get("UIDVALIDITY") is not None
        }  # fmt: skip
        # Written at once: they share a transaction (the store's group commit).
        await asyncio.gather(*(self._store_empty(f, empty[f.name]) for f in folders
                               if f.name in empty))  # fmt: skip
        dirty = False
        for folder in folders:
            status = statuses.get(folder.name) if folder.name != "INBOX" else None
            if folder.name in empty:
                await self._judge_new(conn, folder.name, initial=True)
            elif status is not None and _unchanged(folder, status):
                await self._judge_new(conn, folder.name, initial=False)
            else:
                dirty = await self._sync_folder(conn, folder)
        inbox = folders[-1] if folders and folders[-1].name == "INBOX" else None
        return dirty and inbox is not None, inbox

    async def _store_empty(self, folder: FolderView, status: dict[str, int]) -> None:
        """A folder never synced that STATUS says is empty: stored as synced, as its SELECT
        would have left it (one ``folder.synced`` with 0 messages)."""
        await self.store.apply_folder(
            folder.id, fence=self.fence, uidvalidity=status.get("UIDVALIDITY"),
            uidnext=status.get("UIDNEXT"), highestmodseq=status.get("HIGHESTMODSEQ"),
            messages=0, complete=True,
            events=[("folder.synced", {"folder": folder.name, "messages": 0})],
        )  # fmt: skip

    async def _judge_new(
        self, conn: ImapConnection, name: str, *, initial: bool, new: bool = False
    ) -> None:
        """After a folder's sync, its ``new`` mail judged against waiting expectations (the
        receive API), once stored: a waiting expectation registered meanwhile either is seen
        here or sees it stored (the receive API's catch-up); never neither. A watched folder is
        judged after each of its syncs, even with nothing new."""
        if self.on_new_mail is not None and (new or name in self.watch):

            async def fetch(uid: int, size: int | None) -> bytes:
                return await read_message(conn, name, uid, size=size)

            await self.on_new_mail(self.account_id, name, fetch, initial)

    async def _sync_folder(self, conn: ImapConnection, folder: FolderView) -> bool:
        """Sync one folder; True when the server reported a change made meanwhile.

        Flags: with CONDSTORE only what changed since the stored HIGHESTMODSEQ, otherwise a
        FETCH of every known UID's flags. Expunges: by count (what the server holds must be
        what we hold, less what went, plus what is new), asked for only when the count is off
        (or, without CONDSTORE, read from the same flag FETCH). A UID the server lists there
        that the store lacks (an earlier FETCH answered without it: a server that refused it,
        or lied) is fetched with the new mail. New mail: UID SEARCH above the
        highest known UID, then FETCH in batches of :attr:`SyncOptions.batch`, each stored as
        it arrives (a cut connection resumes where it stopped) and shown as progress; the next
        batch's FETCH is sent before this one's responses are handled (the server prepares it
        meanwhile), and the next batch is read while this one is written. A folder with
        nothing stored that fits one batch is read with one ``UID FETCH 1:*``, no SEARCH.

        A folder's first full sync (``complete`` not yet set, or reset by a new UIDVALIDITY)
        writes no event per message: one ``folder.synced`` with the count when it is done.
        """
        folder_id, name = folder.id, folder.name
        known_validity, known_modseq = folder.uidvalidity, folder.highestmodseq
        condstore = "CONDSTORE" in conn.codec.capabilities
        selected = _selected(await select(conn, name, readonly=True, condstore=condstore))
        if known_validity is not None and selected["UIDVALIDITY"] != known_validity:
            # Courier-IMAP makes up a UIDVALIDITY (the time, in seconds) at each EXAMINE of a
            # folder no client has SELECTed, until a SELECT writes its UID database: examined
            # alone, the folder would be dropped and read afresh at every sync. Selected
            # read-write once (its \Recent flags go, as at any client's first look), the
            # UIDVALIDITY it has now is the one it keeps. Elsewhere, a real change of
            # UIDVALIDITY (rare) costs this one SELECT.
            selected = _selected(await select(conn, name, readonly=False, condstore=condstore))
        validity, uidnext, modseq = (
            selected[k] for k in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ")
        )
        if validity is None:
            # RFC 3501 and 9051 require it: without it a stored UID means nothing. Taken as a
            # new UIDVALIDITY, it dropped the folder and stored it again under none, and the
            # next answer with one read that as a folder never stored: its messages inserted a
            # second time, an internal error at every attempt from then on.
            raise ProtocolError(f"the server selected {name!r} without saying its UIDVALIDITY")
        exists = selected["MESSAGES"] or 0
        if _unchanged(folder, selected):  # nothing to ask, nothing to write
            await self._judge_new(conn, name, initial=False)
            return False
        reset = known_validity is not None and validity != known_validity
        initial = reset or not folder.complete
        # A folder never stored under a UIDVALIDITY holds no message yet: nothing to read.
        never = known_validity is None and validity is not None
        known = {} if reset or never else await self.store.folder_known(folder_id)
        highest = max(known, default=0)
        self.progress = {"folder": name, "done": 0, "total": 0}
        changes: list[Any] = []

        async def run(command: Fetch | Search) -> list[Any]:
            """Run a command; note any sign of another client's change (a FETCH during a
            SEARCH is a flag change pushed to us)."""
            deadline = self.options.fetch_deadline if isinstance(command, Fetch) else None
            found = await conn.run(command, deadline=deadline)
            changes.extend(
                e for e in found.untagged
                if isinstance(e, Exists | ExpungeResponse)
                or (isinstance(e, FetchResponse) and isinstance(command, Search))
            )  # fmt: skip
            return list(found.untagged)

        new_uids: list[int] = []
        # Nothing stored and one batch holds it all: every message is new, so one FETCH of
        # 1:* (which UIDs came is read from its answer), without the SEARCH asking which.
        whole = not known and 0 < exists <= self.options.batch
        if exists and not whole:
            found = await run(Search(f"UID {highest + 1}:*", uid=True))
            new_uids = sorted(
                u for e in found if isinstance(e, SearchResponse) for u in e.ids if u > highest
            )
        flags: dict[int, tuple[str, ...]] = {}
        gone: list[int] = []
        if known and exists:
            if condstore and modseq is not None and known_modseq is not None:
                if modseq != known_modseq:
                    fetched = await run(
                        Fetch(f"1:{highest}", "(UID FLAGS)", uid=True, changed_since=known_modseq)
                    )
                    flags = _changed_flags(fetched, known)
                if exists != len(known) + len(new_uids):
                    found = await run(Search(f"UID 1:{highest}", uid=True))
                    held = {u for e in found if isinstance(e, SearchResponse) for u in e.ids}
                    gone = [uid for uid in known if uid not in held]
                    new_uids = _unstored(held, known, highest) + new_uids
            else:
                fetched = await run(Fetch(f"1:{highest}", "(UID FLAGS)", uid=True))
                flags = _changed_flags(fetched, known)
                held = {e.uid for e in fetched if isinstance(e, FetchResponse) and e.uid}
                gone = [uid for uid in known if uid not in held]
                new_uids = _unstored(held, known, highest) + new_uids
        elif known:
            gone = list(known)
        # HIGHESTMODSEQ is stored only once everything below it is: here when nothing is new,
        # otherwise after the last batch.
        fetching = bool(new_uids) or whole
        done = initial and not fetching
        # The server's count is stored (for the next round's STATUS to say "unchanged") only
        # when the store holds as many: a message missing (refused, left out) keeps the folder
        # selected at each round, where the counts disagree and it is asked for again.
        holding = len(known) - len(gone)
        changed: dict[str, Any] = {"reset": reset, "flags": flags, "gone": gone,
                                   "events": _events(name, reset, (), flags, gone)}  # fmt: skip
        if not fetching:  # else they are written with the first batch, in its transaction
            await self.store.apply_folder(
                folder_id, fence=self.fence, uidvalidity=validity, uidnext=uidnext,
                highestmodseq=modseq, messages=exists if holding == exists else None,
                reset=reset, flags=flags, gone=gone,
                events=changed["events"] + (
                    [("folder.synced", {"folder": name, "messages": exists})] if done else []
                ),
                complete=True if done else (False if reset else None),
            )  # fmt: skip
        self.progress["total"] = exists if whole else len(new_uids)
        batch = self.options.batch
        chunks: list[list[int] | None] = (
            [None] if whole  # 1:*
            else [new_uids[start : start + batch] for start in range(0, len(new_uids), batch)]
        )  # fmt: skip
        # The next batch's FETCH is sent before this one's responses are handled, so the server
        # prepares it meanwhile. Responses are kept by UID: one for a later batch may come in an
        # earlier batch's result; a second one for a UID (a flag change pushed meanwhile) is
        # a change, unless it is the one with the ENVELOPE.
        asked = set(new_uids)  # not yet stored
        got: dict[int, FetchResponse] = {}
        writing: asyncio.Task[None] | None = None
        wanted_before: list[int] = []
        try:
            results = conn.run_pipelined(
                (
                    Fetch("1:*" if chunk is None else compact_sequence(chunk), FETCH_ITEMS,
                          uid=True)
                    for chunk in chunks
                ),
                deadline=self.options.fetch_deadline,
            )  # fmt: skip
            index = 0
            async for completed in results:
                chunk = chunks[index]
                if chunk is None:  # 1:*: the messages are those it returned
                    if completed.ok:
                        chunk = sorted({
                            e.uid for e in completed.untagged
                            if isinstance(e, FetchResponse) and e.uid and "ENVELOPE" in e.items
                        })  # fmt: skip
                    else:  # which did not come is said by UID: ask which there are
                        found = await run(Search("UID 1:*", uid=True))
                        chunk = sorted(
                            {u for e in found if isinstance(e, SearchResponse) for u in e.ids}
                        )
                    asked.update(chunk)
                if not completed.ok:
                    await self._incomplete(completed, chunk, got, (name, validity))
                for e in completed.untagged:
                    if (isinstance(e, FetchResponse) and e.uid in asked
                            and (e.uid not in got or "ENVELOPE" in e.items)):  # fmt: skip
                        got[e.uid] = e
                    elif isinstance(e, Exists | ExpungeResponse | FetchResponse):
                        changes.append(e)
                asked.difference_update(chunk)
                new = [
                    MessageMeta(
                        e.uid, _kept(e.flags), e.internaldate, e.size,
                        e.envelope_summary() or {},
                    )
                    for e in (got.pop(uid) for uid in chunk if uid in got)
                    if e.uid is not None
                ]  # fmt: skip
                last = index == len(chunks) - 1
                first = index == 0
                index += 1
                holding += len(new)
                events = list(changed["events"]) if first else []
                events += [] if initial else _events(name, False, new, {}, ())
                if last and initial:
                    events.append(("folder.synced", {"folder": name, "messages": exists}))
                if writing is not None:
                    await writing  # one write in flight: the order of batches is kept
                    self.progress["done"] += len(wanted_before)
                complete = True if last and initial else (False if first and reset else None)
                writing = asyncio.create_task(self.store.apply_folder(
                    folder_id, fence=self.fence, uidvalidity=validity, uidnext=uidnext,
                    highestmodseq=modseq if last else None,
                    messages=exists if last and holding == exists else None,
                    new=new, events=events,
                    complete=complete, reset=first and reset,
                    flags=flags if first else None, gone=gone if first else (),
                ))  # fmt: skip
                wanted_before = chunk
            if writing is not None:
                await writing
                self.progress["done"] += len(wanted_before)
        finally:
            if writing is not None and not writing.done():
                # Cut off mid-sync: the batch being written still lands (or fails) before the
                # connection is closed and the next attempt starts.
                await asyncio.wait([writing])
        await self._judge_new(conn, name, initial=initial, new=fetching)
        return bool(changes)

    async def _incomplete(
        self, completed: Result, chunk: list[int], got: dict[int, FetchResponse],
        folder: tuple[str, int],
    ) -> None:  # fmt: skip
        """A batch's FETCH refused (NO or BAD) after sending what it could (Dovecot's
        ``imap_fetch_failure = no-after``: a message it cannot read). What came is stored and
        the sync goes on (retrying at once would stop the account at the one message the server
        cannot read); the error log says which UIDs were not stored and what the server said.
        Later rounds ask for them again (the counts disagree: see :meth:`_sync_folder`); a
        refusal of UIDs this supervisor has reported already (``folder``: the folder and its
        UIDVALIDITY) is not reported again, so the log does not fill with one entry per
        round."""
        arrived = {e.uid for e in completed.untagged if isinstance(e, FetchResponse)}
        missing = [uid for uid in chunk if uid not in got and uid not in arrived]
        if missing:
            self._refused = self._refused or {}
            reported = self._refused.setdefault(folder, set())
            if reported.issuperset(missing):
                return
            reported.update(missing)
        found = classify_mailbox(completed, "fetch")
        listed = compact_sequence(missing) if missing else "none"
        found = dataclasses.replace(found, evidence=(
            *found.evidence,
            f"{len(missing)} of {len(chunk)} messages not returned, not stored: UID "
            f"{listed[:200]}{'...' if len(listed) > 200 else ''}",
        ))  # fmt: skip
        await self._record("syncing", found)

    async def _idle_response(self, conn: ImapConnection, left: float) -> Any:
        """The next response during IDLE, or None when ``left`` seconds pass first or the
        supervisor is woken (:meth:`wake` cancels the read: a folder to watch was added, so
        sync now). Giving up a read is safe: what arrived stays in the stream's buffer."""
        if self._wake.is_set():
            self._wake.clear()
            return None
        read = asyncio.ensure_future(conn.next_response("idle", timeout=left))
        self._idle_read = read
        try:
            await asyncio.wait((read,))  # a cancelled read ends the wait; our own cancel raises
        finally:
            self._idle_read = None
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read
        if read.cancelled():
            self._wake.clear()
            return None
        try:
            return read.result()
        except NetError as exc:
            if "no answer within" in str(exc):
                return None
            raise

    async def _idle_loop(self, conn: ImapConnection, account: AccountView) -> None:
        """IDLE on INBOX (left selected by the sync). A push ends the round and INBOX is synced
        (with any folder an expectation watches, polled every :data:`WATCH_POLL` while it
        does); every folder is synced once the poll interval has passed since the last full
        sync."""
        dirty, inbox = await self._sync_all(conn, account)
        full_sync = time.monotonic()
        while True:
            while dirty and inbox is not None:  # again, from what its last sync stored
                folders = await self.store.folders(self.account_id)
                inbox = next((f for f in folders if f.id == inbox.id), None)
                if inbox is not None:
                    dirty = await self._sync_folder(conn, inbox)
            if inbox is None:  # nothing to idle on: every folder at each poll
                await self.store.mark_synced(self.account_id, fence=self.fence)
                await asyncio.sleep(account.spec.poll_interval)
                dirty, inbox = await self._sync_all(conn, account)
                continue
            self.progress = {}  # nothing in progress while idle
            await self._set("idle", synced=True)
            tag = conn.codec.send(Idle())
            changed = False
            async with conn.deadline("idle"):
                while not isinstance(event := await conn.next_response("idle"), Continue):
                    changed = changed or isinstance(event, Exists | ExpungeResponse | FetchResponse)
            # Until the next full sync is due (pushes sync INBOX alone meanwhile).
            due = account.spec.poll_interval - (time.monotonic() - full_sync)
            limit = max(0.1, min(self.options.idle_renew, due))
            if self.watch:
                limit = min(limit, WATCH_POLL)
            deadline = time.monotonic() + limit
            while not changed and (left := deadline - time.monotonic()) > 0:
                event = await self._idle_response(conn, left)
                if event is None:  # the round is over (its time, or a wake)
                    break
                changed = isinstance(event, Exists | ExpungeResponse | FetchResponse)
            conn.codec.done()
            await conn.wait(tag, "idle")
            if not self._full_due and time.monotonic() - full_sync < account.spec.poll_interval:
                # INBOX changed (IDLE said so) or a watched folder is due: those alone; the
                # others wait for the poll interval, and the new mail is stored sooner. A
                # watched folder's poll is part of idling: no state change (and no event)
                # each second.
                if changed:
                    await self._set("syncing")
                dirty, inbox = await self._sync_all(conn, account, only=self.watch)
            else:
                self._full_due = False
                await self._set("syncing")
                dirty, inbox = await self._sync_all(conn, account)
                full_sync = time.monotonic()
