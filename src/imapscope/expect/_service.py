"""The receive API's engine: registers expectations against the server's own order (STATUS
UIDNEXT of each watched folder), judges the messages the sync engine stores against them, and
answers held requests as soon as one is matched.

Race-free by construction: a message counts when its UID is at or above the UIDNEXT the server
reported at registration, whatever the clocks say. The sync engine judges new messages after it
stored them; registration judges, after the expectation is stored, what is stored already from
its baseline on. Whichever comes second sees the other's row, so no message is missed, and a
match is written once (the store refuses a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from imapscope.expect._criteria import Criteria, Miss, body_text
from imapscope.expect._extract import CodePattern, PatternError, codes, compile_pattern
from imapscope.expect._extract import links as find_links
from imapscope.findings import Finding
from imapscope.imap import List, ListResponse, ProtocolError, Status, StatusResponse
from imapscope.mime import Readable, attachments, parse, payload, readable
from imapscope.net import NetError
from imapscope.session import SessionFailure, classify_net_error, select
from imapscope.store import JUNK_NAMES, ExpectationView, MessageView, Store
from imapscope.sync import (
    MAX_FETCHED,
    Fetcher,
    SyncFailure,
    SyncService,
    connect,
    fetch_message,
    read_message,
)

log = logging.getLogger("imapscope.expect")

#: The longest a request may be held (``wait``), and how long an expectation lives by default
#: and at most (seconds).
MAX_WAIT = 120.0
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 86400
#: How often a held request looks at the database (a match made by another worker).
POLL = 0.25
#: Messages judged per database read (a flood is judged in several).
JUDGED_AT_ONCE = 500


class ExpectError(Exception):
    """Bad input or a server that cannot be asked: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@dataclasses.dataclass
class _Candidate:
    """One message being judged, read from the server at most once."""

    meta: MessageView
    fetch: Fetcher
    _read: Readable | None = None
    _problem: str | None = None

    async def content(self) -> Readable | None:
        if self._read is None and self._problem is None:
            try:
                raw = await self.fetch(self.meta.uid, self.meta.size)
            except LookupError as exc:  # gone meanwhile, or too big to read
                self._problem = str(exc)
                return None
            try:
                # In a thread: the parser may take seconds on a hostile message.
                self._read = await asyncio.to_thread(readable, raw)
            except Exception as exc:
                # A message the MIME parser still chokes on (a bug of ours or the standard
                # library's): a near miss that says so. Raised, it would stop the judging of
                # the folder at this message at every round.
                log.exception("message %s in %r could not be read", self.meta.uid, self.meta.folder)
                self._problem = f"the message could not be read ({type(exc).__name__})"
        return self._read

    @property
    def problem(self) -> str | None:
        return self._problem


def _describe(meta: MessageView, misses: Sequence[Miss]) -> dict[str, Any]:
    envelope = meta.envelope
    return {
        "folder": meta.folder, "uid": meta.uid, "subject": envelope.get("subject") or "",
        "from": list(envelope.get("from", [])), "to": list(envelope.get("to", [])),
        "arrived": meta.internaldate.isoformat() if meta.internaldate else None,
        "failed": [m.to_json() for m in misses],
    }  # fmt: skip


def message_json(meta: MessageView, found: Readable, pattern: CodePattern | None) -> dict[str, Any]:
    """A matched message as the API returns it."""
    visible = body_text(found)
    return {
        "folder": meta.folder, "uid": meta.uid, "size": meta.size,
        "internaldate": meta.internaldate.isoformat() if meta.internaldate else None,
        "envelope": dict(meta.envelope), "headers": dict(found.headers),
        "text": found.text, "html": found.html,
        "links": find_links(found.text, found.html), "codes": codes(visible, pattern),
        "attachments": [
            {"index": i, "name": a.filename, "type": a.content_type, "size": a.size,
             "sha256": a.sha256}
            for i, a in enumerate(found.attachments)
        ],
        "problems": list(found.problems),
    }  # fmt: skip


class ExpectService:
    """Installs itself as the sync service's new-mail hook."""

    def __init__(self, sync: SyncService) -> None:
        self.sync = sync
        self.store: Store = sync.store
        self._matched: dict[int, asyncio.Event] = {}  # held requests of this process
        self._locks: dict[int, asyncio.Lock] = {}  # one judge at a time per account
        sync.on_new_mail = self.on_new_mail

    # -- registering ---------------------------------------------------------------------------

    async def register(
        self, account_id: int, criteria: Mapping[str, Any], *, folders: Sequence[str],
        exclusive: bool = False, lifetime: int = DEFAULT_LIFETIME, code_pattern: str | None = None,
    ) -> ExpectationView:  # fmt: skip
        """Register an expectation: only messages the server files after this call (by its own
        UIDs) can match."""
        try:
            Criteria.of(criteria)
            if code_pattern:
                compile_pattern(code_pattern)
        except PatternError as exc:
            raise ExpectError(422, str(exc)) from exc
        if not 1 <= lifetime <= MAX_LIFETIME:
            raise ExpectError(422, f"expires_in is {lifetime}s; give 1-{MAX_LIFETIME} seconds")
        folders = list(dict.fromkeys(folders or ["INBOX"]))
        account = await self.store.account(account_id)
        if account.paused:
            resume = f"POST /api/v1/accounts/{account_id}/resume"
            raise ExpectError(409, f"account {account_id} is paused: nothing watches its mail; "
                              f"resume it ({resume}) first")  # fmt: skip
        stored = {f.name: f for f in await self.store.folders(account_id)}
        try:
            conn = await connect(self.store, account, self.sync.options)
        except SyncFailure as exc:
            raise _unreachable(exc.finding) from exc
        try:
            try:
                baseline = {f: await _uidnext(conn, f) for f in folders}
            except (NetError, ProtocolError) as exc:
                raise _unreachable(classify_net_error(exc, "status", conn.transcript)) from exc
            now = dt.datetime.now(dt.UTC)
            # The other folders are judged for near misses only, from what is stored there now.
            # (Not a folder still in its first sync: its old messages are no near misses.)
            judged = {n: f.uidnext - 1 for n, f in stored.items()
                      if n not in baseline and f.uidnext is not None and f.complete}  # fmt: skip
            judged |= {f: uidnext - 1 for f, uidnext in baseline.items()}
            view = await self.store.add_expectation(
                account_id, criteria=dict(criteria) | {"code_pattern": code_pattern or None},
                folders=folders, exclusive=exclusive, baseline=baseline, judged=judged,
                expires=now + dt.timedelta(seconds=lifetime),
            )  # fmt: skip
            junk = {n for n in stored if n.lower() in JUNK_NAMES}  # near misses named at once
            self.sync.watch(account_id, set(folders) | junk)
            # What the sync stored before it could see this expectation.
            for folder in folders:
                await self.judge(account_id, folder, _reader(conn, folder))
        except SessionFailure as exc:
            raise _unreachable(exc.finding) from exc
        finally:
            await conn.close()
        return await self.store.expectation(view.id)

    # -- judging -------------------------------------------------------------------------------

    async def on_new_mail(
        self, account_id: int, folder: str, fetch: Fetcher, initial: bool
    ) -> None:
        """The sync engine's hook. A bug here must not stop the account's sync: it is logged;
        a connection failure while reading a message is the sync's own (it reconnects, and the
        messages are judged again)."""
        try:
            await self.judge(account_id, folder, fetch)
        except (NetError, ProtocolError, SessionFailure, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("account %s: judging new mail in %r failed", account_id, folder)

    async def judge(self, account_id: int, folder: str, fetch: Fetcher) -> None:
        """Judge the folder's stored messages each waiting expectation has not judged yet."""
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            while True:
                # Those that watch the folder, or knew it at registration (for near misses); a
                # folder that came later is not theirs to judge.
                waiting = [e for e in await self.store.waiting_expectations(account_id)
                           if folder in e.judged]  # fmt: skip
                if not waiting:
                    return
                start = min(e.judged[folder] for e in waiting) + 1
                metas = await self.store.messages_from(account_id, folder, start, JUDGED_AT_ONCE)
                if not metas:
                    return
                await self._judge(waiting, folder, metas, fetch)
                if len(metas) < JUDGED_AT_ONCE:
                    return

    async def _judge(
        self, waiting: list[ExpectationView], folder: str, metas: list[MessageView],
        fetch: Fetcher,
    ) -> None:  # fmt: skip
        claimed: set[int] = set()  # UIDs an exclusive expectation took in this round
        open_ = list(waiting)
        near: dict[int, list[dict[str, Any]]] = {e.id: [] for e in waiting}
        rules = {e.id: Criteria.of(e.criteria) for e in waiting}  # patterns compiled once
        for meta in metas:
            candidate = _Candidate(meta, fetch)
            for e in list(open_):
                if meta.uid <= e.judged.get(folder, 0):
                    continue
                misses = await _misses(rules[e.id], candidate, read=folder in e.folders)
                watched = folder in e.folders and meta.uid >= e.baseline.get(folder, 1)
                if not misses and watched:
                    if not (e.exclusive and meta.uid in claimed):
                        if await self._match(e, meta, candidate, near[e.id]):
                            open_.remove(e)
                            claimed.update([meta.uid] if e.exclusive else [])
                            continue
                        if not e.exclusive:
                            open_.remove(e)  # it ended meanwhile (cancelled, expired, matched)
                            continue
                    misses = [Miss("exclusive", "", "", "another exclusive expectation with "
                                   "matching criteria took this message")]  # fmt: skip
                if folder not in e.folders:
                    where = ", ".join(e.folders)
                    misses = [Miss("folder", where, folder,
                                   f"landed in {folder}; the expectation watches {where}"),
                              *misses]  # fmt: skip
                if misses:
                    near[e.id].append(_describe(meta, misses))
        for e in open_:
            await self.store.note_judged(
                e.id, judged={folder: metas[-1].uid}, near_misses=near[e.id]
            )

    async def _match(
        self, e: ExpectationView, meta: MessageView, candidate: _Candidate,
        near: list[dict[str, Any]],
    ) -> bool:  # fmt: skip
        content = await candidate.content()
        assert content is not None  # it met every criterion, so it was read
        matched = await self.store.match_expectation(
            e.id, folder=meta.folder, uid=meta.uid, exclusive=e.exclusive,
            message=message_json(meta, content, _pattern(e)), near_misses=near,
        )  # fmt: skip
        if matched:
            self._wake(e.id)
        return matched

    # -- answering -----------------------------------------------------------------------------

    def _wake(self, expectation_id: int) -> None:
        event = self._matched.get(expectation_id)
        if event is not None:
            event.set()

    async def wait(self, expectation_id: int, seconds: float) -> ExpectationView:
        """The expectation once it is no longer waiting, or after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(seconds, MAX_WAIT)
        event = self._matched.setdefault(expectation_id, asyncio.Event())
        try:
            while True:
                view = await self.store.expectation(expectation_id)
                left = deadline - loop.time()
                if view.state != "waiting" or left <= 0:
                    return view
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(POLL, left)):
                        await event.wait()
        finally:
            self._matched.pop(expectation_id, None)

    async def attachment(self, expectation_id: int, index: int) -> tuple[str, str, bytes]:
        """A matched message's attachment (name, type, bytes), read from the server now."""
        view = await self.store.expectation(expectation_id)
        if view.folder is None or view.uid is None:
            raise ExpectError(409, f"expectation {expectation_id} is {view.state}: there is no "
                              "message to read attachments from")  # fmt: skip
        account = await self.store.account(view.account_id)
        try:
            raw = await fetch_message(self.store, account, view.folder, view.uid,
                                      self.sync.options)  # fmt: skip
        except SyncFailure as exc:
            raise _unreachable(exc.finding) from exc
        except LookupError as exc:
            raise ExpectError(410, f"the message is no longer on the server: {exc}") from exc
        try:
            parts = attachments(parse(raw))
        except RecursionError:  # too deep to read: readable() listed none either
            parts = []
        if not 0 <= index < len(parts):
            raise ExpectError(404, f"the message has {len(parts)} attachments; there is no "
                              f"attachment {index} (they are numbered from 0)")  # fmt: skip
        part = parts[index]
        return part.get_filename() or f"attachment-{index}", part.get_content_type(), payload(part)


async def _misses(criteria: Criteria, candidate: _Candidate, *, read: bool) -> list[Miss]:
    """The criteria a message fails. It is read from the server only when the envelope passes
    and its content is needed: to judge the body or headers, or (``read``: it is in a watched
    folder) for the match."""
    misses = criteria.judge_envelope(candidate.meta.envelope)
    if misses or not (read or criteria.needs_body):
        return misses
    content = await candidate.content()
    if content is None:
        return [Miss("read", "", "", candidate.problem or "the message could not be read")]
    return criteria.judge_content(content)


def _pattern(e: ExpectationView) -> CodePattern | None:
    source = e.criteria.get("code_pattern")
    return compile_pattern(source) if source else None


def _reader(conn: Any, folder: str) -> Fetcher:
    """Reads messages of ``folder`` over ``conn``, selecting it first."""
    selected = False

    async def fetch(uid: int, size: int | None) -> bytes:
        nonlocal selected
        if not selected:
            await select(conn, folder, readonly=True)
            selected = True
        return await read_message(conn, folder, uid, max_size=MAX_FETCHED, size=size)

    return fetch


async def _uidnext(conn: Any, folder: str) -> int:
    result = await conn.run(Status(folder, ("UIDNEXT",)), "status")
    for e in result.untagged:
        if isinstance(e, StatusResponse) and "UIDNEXT" in e.items:
            return int(e.items["UIDNEXT"])
    said = f"{result.tagged.status} {result.tagged.text}".strip()
    listed = await conn.run(List("", "*"), "list")
    names = sorted(e.name for e in listed.untagged if isinstance(e, ListResponse))
    raise ExpectError(
        422, f"there is no folder {folder!r} on the server to watch (STATUS answered: {said}); "
        f"give one of the account's folders: {', '.join(names) or 'it has none'}",
    )  # fmt: skip


def _unreachable(found: Finding) -> ExpectError:
    return ExpectError(
        502, f"the account's server could not be asked where its mail stands: {found.summary}",
        code=found.code, fix=found.fix,
    )  # fmt: skip
