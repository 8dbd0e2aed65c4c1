"""The sandbox IMAP server: asyncio sessions on the codec's server role, one ``do_<VERB>`` per
command, over the in-memory :mod:`._store`.

Theory of operation
-------------------
A :class:`Session` keeps session state (user, TLS) apart from selected-mailbox state (the mailbox,
read-only or not, and its *view*: the UIDs in sequence-number order as this client knows them).
Other sessions' changes arrive as :class:`~._store.Change` notes; they are turned into EXISTS,
EXPUNGE and FETCH FLAGS responses against the view before each tagged completion, or at once
while the client is in IDLE. The view only changes when those responses are sent, so sequence
numbers always mean what the client last heard (RFC 9051 7.5.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from imapscope import __version__
from imapscope.imap import (
    NEED_DATA,
    SERVER_MAX_LINE,
    SERVER_MAX_LITERAL,
    AppendUid,
    BadCommand,
    Bye,
    Capability,
    CommandReceived,
    ContinuationRequest,
    CopyUid,
    Enabled,
    ESearch,
    Exists,
    ExpungeResponse,
    FetchResponse,
    Flags,
    Greeting,
    IdleDone,
    IdResponse,
    ListResponse,
    NamespaceResponse,
    RawValue,
    Recent,
    Response,
    ResponseCode,
    SaslResponse,
    SearchResponse,
    ServerConnection,
    StatusResponse,
    TaggedResponse,
    TooLarge,
    UnknownResponse,
    UntaggedStatus,
    Value,
    Vanished,
    compact_sequence,
    expand_sequence,
)
from imapscope.imap import Command as ImapCommand
from imapscope.imap._commands import (
    Append,
    Authenticate,
    Copy,
    Create,
    Enable,
    Expunge,
    Fetch,
    List,
    Login,
    MailboxCommand,
    Rename,
    Search,
    Select,
    Sort,
    Status,
    Thread,
)
from imapscope.imap._commands import Store as StoreCommand
from imapscope.imap._events import Status as Outcome
from imapscope.sandbox import _catenate, _mime, _sort
from imapscope.sandbox._admin import AdminServer
from imapscope.sandbox._faults import FaultRule, Faults
from imapscope.sandbox._search import SearchError, compile_search
from imapscope.sandbox._smtp import smtp_factory
from imapscope.sandbox._store import (
    DELIMITER,
    SHARED_PREFIX,
    SYSTEM_FLAGS,
    Change,
    Mailbox,
    Message,
    Store,
    StoreError,
    User,
    canonical_flags,
)

logger = logging.getLogger(__name__)
#: Which IMAP the sandbox speaks: both (IMAP4rev2 semantics once a client ENABLEs it, RFC 9051
#: 7.1), or only one of them (a server that speaks only IMAP4rev2 uses it from the start).
REVISIONS = {"both": ("IMAP4rev1", "IMAP4rev2"), "rev1": ("IMAP4rev1",), "rev2": ("IMAP4rev2",)}
BASE_CAPABILITIES = (
    "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS",
    "UNSELECT", "MOVE", "SPECIAL-USE", "CHILDREN", "CONDSTORE", "QRESYNC", "LIST-STATUS",
    "BINARY", "PREVIEW", "OBJECTID", "ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "MULTIAPPEND", "CATENATE", "LIST-EXTENDED",
    "STATUS=SIZE",
)  # fmt: skip
_MACROS = {
    "ALL": "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE",
    "FAST": "FLAGS INTERNALDATE RFC822.SIZE",
    "FULL": "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY",
}
_ITEM = re.compile(r"([A-Za-z0-9.]+)(?:\[([^\]]*)\])?(?:<(\d+)(?:\.(\d+))?>)?")
FetchItem = tuple[str, str | None, int | None, int | None]  # name, section, origin, count
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def ok(tag: str, text: str, code: ResponseCode | None = None) -> TaggedResponse:
    return TaggedResponse(tag, "OK", code, text)


def no(tag: str, text: str, code: str | None = None) -> TaggedResponse:
    return TaggedResponse(tag, "NO", ResponseCode(code) if code else None, text)


def bad(tag: str, text: str) -> TaggedResponse:
    return TaggedResponse(tag, "BAD", None, text)


def refusal(tag: str, status: Outcome, text: str, code: str | None = None) -> Response:
    """A command refused before it could be read (BAD, or NO for a literal too large): tagged,
    or untagged when the line carried no tag a response can (Dovecot: "* BAD Error in IMAP
    command received by server.")."""
    said = ResponseCode(code) if code else None
    return (
        UntaggedStatus(status, said, text)
        if tag == "*"
        else TaggedResponse(tag, status, said, text)
    )


def internaldate(message: Message) -> str:
    when = message.internaldate
    return f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year} {when:%H:%M:%S} +0000"


#: Before login a client may send little (Dovecot's imap-login reads a few KiB of command at
#: most: LOGIN_MAX_INBUF_SIZE), so an unauthenticated peer cannot make the server hold much.
PRELOGIN_MAX_LINE = 8 * 1024
PRELOGIN_MAX_LITERAL = 8 * 1024
#: Once logged in: one command's literals together (an APPEND's message, or several in one
#: MULTIAPPEND-like line) may not exceed this; each literal is capped by SERVER_MAX_LITERAL.
MAX_COMMAND_LITERALS = SERVER_MAX_LITERAL
#: Dovecot disconnects a client that has not logged in after 3 minutes of inactivity
#: (login-common's CLIENT_LOGIN_IDLE_TIMEOUT_MSECS), with "* BYE Disconnected for inactivity."
PRELOGIN_IDLE_TIMEOUT = 180.0


@dataclass
class Session:
    server: SandboxServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tls: bool
    conn: ServerConnection = field(default_factory=ServerConnection)
    user: User | None = None
    mailbox: Mailbox | None = None
    readonly: bool = False
    view: list[int] = field(default_factory=list)
    pending: list[Change] = field(default_factory=list)
    idle_tag: str | None = None
    condstore: bool = False
    qresync: bool = False  # ENABLE QRESYNC: expunges are reported as VANISHED (RFC 7162)
    throttle: int = 0  # bytes per second, 0 = no limit (a fault)
    mechanism: str = "PLAIN"
    login_name: str | None = None  # AUTHENTICATE LOGIN: the user name, once given
    oauth_failed: bool = False
    hold_expunges: bool = False  # answering FETCH/STORE/SEARCH by sequence number
    recent: set[int] = field(default_factory=set)  # UIDs that are \\Recent in this session
    saved: set[int] = field(default_factory=set)  # SEARCH RETURN (SAVE): UIDs "$" names
    rev2: bool = False  # ENABLE IMAP4rev2 (or a server that speaks only IMAP4rev2)

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def capabilities(self) -> tuple[str, ...]:
        caps = [*self.server.revisions, *BASE_CAPABILITIES]
        faults = self.server.faults
        if self.server.tls_context is not None and not self.tls:
            caps.append("STARTTLS")
        if self.user is None:
            caps += ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=XOAUTH2"]
            if faults.login_disabled and not self.tls:
                caps.append("LOGINDISABLED")
        hidden = faults.hidden_capabilities()
        return tuple(c for c in caps if c.upper() not in hidden)

    def send(self, *responses: Response) -> None:
        for response in responses:
            self.conn.send(response)

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if not data:
            return
        if not self.throttle:
            self.writer.write(data)
            await self.writer.drain()
            return
        chunk = max(1, self.throttle // 10)  # ten writes a second at the allowed rate
        for start in range(0, len(data), chunk):
            self.writer.write(data[start : start + chunk])
            await self.writer.drain()
            await asyncio.sleep(chunk / self.throttle)

    def on_change(self, change: Change) -> None:
        self.pending.append(change)
        if self.idle_tag is not None:
            self.send(*self.updates())
            data = self.conn.data_to_send()
            if data:
                self.writer.write(data)

    def updates(self) -> list[Response]:
        """Pending changes as responses against this session's view; the view follows.

        Order matters to clients that track sequence numbers (RFC 3501 §7.4.1, §5.5): no
        EXPUNGE while answering FETCH, STORE or SEARCH by sequence number (held until a command
        that may carry it: NOOP, CHECK, IDLE, EXPUNGE, a UID command, as Dovecot does), and no
        FETCH for a message number before an EXISTS has announced it."""
        found: list[Response] = []
        mailbox = self.mailbox
        if mailbox is None:
            self.pending.clear()
            return found
        told = len(self.view)  # messages the client knows of (EXISTS minus EXPUNGEs)
        vanished: list[int] = []
        vanish_at = 0
        held: list[Change] = []
        for change in self.pending:
            if change.kind == "keywords":
                found.extend(self.flag_responses())
            elif change.kind == "expunge" and change.uid in self.view:
                if self.hold_expunges:
                    held.append(change)
                    continue
                seq = self.view.index(change.uid) + 1
                self.view.pop(seq - 1)
                told -= 1
                if self.qresync:
                    vanish_at = vanish_at if vanished else len(found)
                    vanished.append(change.uid)
                else:
                    found.append(ExpungeResponse(seq))
            elif change.kind == "exists" and change.uid not in self.view:
                self.view.append(change.uid)
                self.take_recent([change.uid])
            elif change.kind == "flags" and change.uid in self.view:
                message = mailbox.by_uid(change.uid)
                if message is not None:
                    if self.view.index(change.uid) + 1 > told:
                        found += self.exists()
                        told = len(self.view)
                    found.append(self.fetch_flags(message, with_uid=True))
        self.pending = held
        if vanished:
            found.insert(vanish_at, Vanished(compact_sequence(vanished), earlier=False))
        if len(self.view) > told:
            found += self.exists()
        return found

    def exists(self) -> list[Response]:
        """EXISTS, and RECENT with it (RFC 3501 §7.3.2; IMAP4rev2 has no RECENT)."""
        if self.rev2:
            return [Exists(len(self.view))]
        return [Exists(len(self.view)), Recent(len(self.recent))]

    def take_recent(self, uids: list[int]) -> None:
        """A read-write session takes the recent ones it is first to see; a read-only one
        (EXAMINE) sees them as recent without taking them (RFC 3501 §2.3.2)."""
        assert self.mailbox is not None
        if self.readonly:
            self.recent.update(self.mailbox.unclaimed.intersection(uids))
        else:
            self.recent |= self.mailbox.claim(uids)

    def flag_responses(self) -> tuple[Flags, UntaggedStatus]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the selected mailbox, keywords
        included."""
        assert self.mailbox is not None
        defined = (*SYSTEM_FLAGS, *sorted(self.mailbox.keywords))
        permanent = () if self.readonly else (*defined, "\\*")
        return Flags(defined), UntaggedStatus(
            "OK", ResponseCode("PERMANENTFLAGS", permanent), "Flags permitted"
        )

    def flags_of(self, message: Message) -> tuple[str, ...]:
        """The message's flags as this session sees them (\\Recent is per session)."""
        shown = sorted(message.flags)
        if message.uid in self.recent and not self.rev2:  # IMAP4rev2 has no \\Recent
            return (*shown, "\\Recent")
        return tuple(shown)

    def fetch_flags(self, message: Message, *, with_uid: bool) -> FetchResponse:
        return FetchResponse(
            seq=self.view.index(message.uid) + 1,
            uid=message.uid if with_uid else None,
            flags=self.flags_of(message),
            modseq=message.modseq if self.condstore else None,
        )

    def messages(self, text: str, uid: bool) -> list[tuple[int, Message]]:
        """(sequence number, message) for a sequence or UID set, in view order."""
        assert self.mailbox is not None
        if text == "$":  # the saved search result (RFC 5182), whichever form the command is
            wanted = set(self.saved)
        elif uid:
            wanted = set(expand_sequence(text, max(self.view, default=0))) if self.view else set()
        else:
            numbers = set(expand_sequence(text, len(self.view))) if self.view else set()
            wanted = {self.view[n - 1] for n in numbers if 1 <= n <= len(self.view)}
        found = []
        for seq, message_uid in enumerate(self.view, 1):
            if message_uid in wanted:
                message = self.mailbox.by_uid(message_uid)
                if message is not None:
                    found.append((seq, message))
        return found

    def deselect(self) -> None:
        if self.mailbox is not None:
            self.mailbox.listeners.discard(self.on_change)
        self.mailbox, self.view, self.pending, self.recent = None, [], [], set()
        self.saved = set()  # RFC 5182: "$" is reset when a mailbox is (de)selected

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.conn.set_limits(max_line=PRELOGIN_MAX_LINE, max_literal=PRELOGIN_MAX_LITERAL)
        try:
            if not await self.greet():
                return
            while True:
                idle = self.server.prelogin_idle_timeout if self.user is None else None
                try:
                    async with asyncio.timeout(idle):
                        data = await self.reader.read(65536)
                except TimeoutError:
                    self.send(Bye(None, "Disconnected for inactivity."))
                    await self.flush()
                    return
                if not data:
                    return
                self.conn.receive_data(data)
                while (event := self.conn.next_event()) is not NEED_DATA:
                    if await self.handle(event) is False:
                        await self.flush()
                        return
                await self.flush()
        except (ConnectionError, ssl.SSLError, _Disconnect):
            return
        finally:
            self.deselect()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def greet(self) -> bool:
        """Send the greeting, or the fault that replaces it; False ends the session."""
        rule = self.server.faults.greeting()
        if rule is None:
            self.send(Greeting("OK", ResponseCode("CAPABILITY", self.capabilities),
                               "imapscope sandbox ready"))  # fmt: skip
            await self.flush()
            return True
        if rule.action == "bye":
            self.send(Greeting("BYE", None, rule.text or "Server unavailable"))
            await self.flush()
            return False
        if rule.action == "banner":
            self.writer.write(rule.text.encode() + b"\r\n")
        # silence (and after a banner): say nothing more until the client gives up.
        while await self.reader.read(65536):
            pass
        return False

    async def handle(self, event: object) -> bool:
        if isinstance(event, TooLarge):
            if not event.fatal:  # the client waits for "+": refuse, and the session goes on
                self.send(refusal(event.tag, "NO", f"Too large: {event.message}", "TOOBIG"))
                return True
            # The data is coming anyway (a non-synchronizing literal, an endless line): it
            # cannot be told from commands, so the connection ends (RFC 7888 §4).
            if event.tag != "*":
                self.send(bad(event.tag, f"Too large: {event.message}"))
            self.send(Bye(None, f"Too large: {event.message}"))
            return False
        if isinstance(event, BadCommand):
            self.send(refusal(event.tag, event.status, event.message))
        elif isinstance(event, IdleDone):
            self.idle_tag = None
            self.send(*self.updates(), ok(event.tag, "IDLE terminated"))
        elif isinstance(event, SaslResponse):
            self.finish_plain(event.tag, event.data)
        elif isinstance(event, CommandReceived):
            verb = event.command.verb().split()[-1]
            handler: Callable[[str, ImapCommand], object] | None = getattr(self, f"do_{verb}", None)
            if handler is None:
                self.send(bad(event.tag, f"{verb} is not supported"))
                return True
            mailbox = getattr(event.command, "mailbox", None) or (
                self.mailbox.name if self.mailbox else None
            )
            rule = self.server.faults.for_command(
                verb, self.user.name if self.user else _user_of(event.command), mailbox
            )
            if rule is not None:
                if not await self.inject(rule, event.tag):
                    return False
                if rule.action in ("no", "bad"):
                    return True
            self.hold_expunges = verb in ("FETCH", "STORE", "SEARCH") and not getattr(
                event.command, "uid", False
            )
            try:
                result = handler(event.tag, event.command)
                if asyncio.iscoroutine(result):
                    result = await result
            except (ConnectionError, ssl.SSLError, _Disconnect):
                raise
            except StoreError as exc:  # the store refused (no such mailbox, ...): NO, its code
                self.complete(no(event.tag, exc.text, exc.code))
                return True
            except Exception as exc:  # a bug here must not look like a network failure
                logger.exception("sandbox: %s failed", verb)
                self.send(TaggedResponse(event.tag, "BAD", ResponseCode("SERVERBUG"),
                                         f"internal error: {type(exc).__name__}"))  # fmt: skip
                return True
            finally:
                self.hold_expunges = False
            if rule is not None and rule.action == "disconnect":  # mid-reply or mid-literal
                data = self.conn.data_to_send()
                cut = len(data) // 2
                literal = _LITERAL.search(data)
                if rule.when == "mid-literal" and literal is not None:
                    cut = literal.end() + int(literal.group(1)) // 2
                self.writer.write(data[:cut])
                raise _Disconnect
            return result is not False
        return True

    async def inject(self, rule: FaultRule, tag: str) -> bool:
        """Apply a command fault before the command runs; False ends the session."""
        if rule.action in ("no", "bad"):
            code = ResponseCode(rule.code) if rule.code else None
            status: Literal["NO", "BAD"] = "NO" if rule.action == "no" else "BAD"
            self.send(TaggedResponse(tag, status, code, rule.text or "Injected failure"))
            if rule.close:
                self.send(Bye(None, "imapscope sandbox signing off"))
                return False
        elif rule.action == "bye":
            self.send(Bye(None, rule.text or "Injected disconnect"))
            return False
        elif rule.action == "delay":
            await asyncio.sleep(rule.delay_ms / 1000)
        elif rule.action == "disconnect" and rule.when == "before":
            self.conn.data_to_send()
            raise _Disconnect
        elif rule.action == "throttle":
            self.throttle = rule.bytes_per_second
        return True

    def complete(self, *responses: Response) -> None:
        """Send responses, then the pending updates, before the tagged completion (last). A
        keyword defined meanwhile (by this command or another session) is announced (FLAGS)
        first: the command's own FETCH data may already carry it."""
        *data, tagged = responses
        if self.mailbox is not None and any(c.kind == "keywords" for c in self.pending):
            self.pending = [c for c in self.pending if c.kind != "keywords"]
            data = [*self.flag_responses(), *data]
        self.send(*data, *self.updates(), tagged)

    # -- any state ----------------------------------------------------------------------------

    def do_CAPABILITY(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        self.complete(Capability(self.capabilities), ok(tag, "CAPABILITY completed"))

    def do_NOOP(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        self.complete(ok(tag, "NOOP completed"))

    def do_CHECK(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        self.complete(ok(tag, "CHECK completed"))

    def do_LOGOUT(self, tag: str, command: ImapCommand) -> bool:  # noqa: N802
        self.send(Bye(None, "imapscope sandbox logging out"), ok(tag, "LOGOUT completed"))
        return False

    def do_ID(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        params: dict[str, str | None] = {"name": "imapscope-sandbox", "version": __version__}
        self.complete(IdResponse(params), ok(tag, "ID completed"))

    async def do_STARTTLS(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        context = self.server.tls_context
        if context is None or self.tls or "STARTTLS" not in self.capabilities:
            self.send(bad(tag, "STARTTLS is not available here"))
            return
        self.send(ok(tag, "Begin TLS negotiation now"))
        await self.flush()
        await self.writer.start_tls(context)
        self.conn.tls_established()
        self.tls = True

    # -- not authenticated --------------------------------------------------------------------

    def login(self, tag: str, name: str, password: str) -> None:
        user = self.server.store.authenticate(name, password)
        if user is None:
            self.send(no(tag, "Authentication failed.", "AUTHENTICATIONFAILED"))
            return
        self.logged_in(tag, user)

    def logged_in(self, tag: str, user: User) -> None:
        self.user = user
        self.conn.set_limits(max_line=SERVER_MAX_LINE, max_literal=SERVER_MAX_LITERAL,
                             max_command_literals=MAX_COMMAND_LITERALS)  # fmt: skip
        self.send(ok(tag, "Logged in", ResponseCode("CAPABILITY", self.capabilities)))

    def do_LOGIN(self, tag: str, command: Login) -> None:  # noqa: N802
        if "LOGINDISABLED" in self.capabilities:
            self.send(no(tag, "Plaintext authentication disallowed", "PRIVACYREQUIRED"))
            return
        self.login(tag, command.user, command.password)

    def do_AUTHENTICATE(self, tag: str, command: Authenticate) -> None:  # noqa: N802
        mechanism = command.mechanism
        if mechanism not in ("PLAIN", "LOGIN", "XOAUTH2"):
            self.send(no(tag, f"Unsupported mechanism {mechanism}", "CANNOT"))
            return
        self.mechanism = mechanism
        self.login_name = None
        initial = command.initial_response
        if initial is None:
            prompt = base64.b64encode(b"Username:").decode() if mechanism == "LOGIN" else ""
            self.send(ContinuationRequest(prompt))
            return
        try:
            data = b"" if initial == "=" else base64.b64decode(initial, validate=True)
        except (binascii.Error, ValueError):
            self.send(bad(tag, "Invalid base64"))
            return
        self.finish_plain(tag, data)

    def finish_plain(self, tag: str, data: bytes | None) -> None:
        if data is None:
            self.send(bad(tag, "Authentication cancelled"))
            return
        if self.mechanism == "XOAUTH2":
            self.finish_xoauth2(tag, data)
            return
        if self.mechanism == "LOGIN":  # user name, then password, each on request
            if self.login_name is None:
                self.login_name = data.decode("utf-8", "replace")
                self.send(ContinuationRequest(base64.b64encode(b"Password:").decode()))
            else:
                self.login(tag, self.login_name, data.decode("utf-8", "replace"))
            return
        parts = data.split(b"\0")
        if len(parts) != 3:
            self.send(bad(tag, "Malformed PLAIN response"))
            return
        self.login(tag, parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace"))

    def finish_xoauth2(self, tag: str, data: bytes) -> None:
        """XOAUTH2 (Google's format): the bearer token stands in for the user's secret. A bad
        token gets Google's JSON error challenge; the client's empty answer then gets NO."""
        if self.oauth_failed:
            self.oauth_failed = False
            self.send(no(tag, "Invalid credentials (Failure)", "AUTHENTICATIONFAILED"))
            return
        fields = dict(
            part.split("=", 1)
            for part in data.decode("utf-8", "replace").split("\x01")
            if "=" in part
        )
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        account = self.server.store.authenticate(user, token)
        if account is None:
            self.oauth_failed = True
            error = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
            self.send(ContinuationRequest(base64.b64encode(error).decode()))
            return
        self.logged_in(tag, account)

    # -- authenticated ------------------------------------------------------------------------

    def use_rev2(self) -> None:
        """IMAP4rev2 semantics (RFC 9051): ESEARCH for SEARCH, no \\Recent, UTF-8 names."""
        self.rev2 = True
        self.conn.utf8 = True

    @property
    def account(self) -> User:
        assert self.user is not None
        return self.user

    def do_ENABLE(self, tag: str, command: Enable) -> None:  # noqa: N802
        wanted = {c.upper() for c in command.capabilities}
        enabled: list[str] = [c for c in ("CONDSTORE", "QRESYNC") if c in wanted]
        if "IMAP4REV2" in wanted and "IMAP4rev2" in self.server.revisions and not self.rev2:
            enabled.append("IMAP4rev2")
            self.use_rev2()
        self.condstore = self.condstore or bool(enabled)  # QRESYNC implies CONDSTORE
        self.qresync = self.qresync or "QRESYNC" in enabled
        self.complete(Enabled(tuple(enabled)), ok(tag, "ENABLE completed"))

    def do_NAMESPACE(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        namespaces = NamespaceResponse((("", DELIMITER),), (), ((SHARED_PREFIX, DELIMITER),))
        self.complete(namespaces, ok(tag, "NAMESPACE completed"))

    def lookup(self, name: str) -> Mailbox:
        """A mailbox by name: the user's own, or one in the shared namespace."""
        if name.startswith(SHARED_PREFIX):
            return self.server.store.shared.get(name)
        return self.account.get(name)

    def refuse_shared(self, tag: str, *names: str) -> bool:
        if any(name.startswith(SHARED_PREFIX) for name in names):
            self.complete(no(tag, "The shared namespace is managed by the administrator",
                             "NOPERM"))  # fmt: skip
            return True
        return False

    def do_CREATE(self, tag: str, command: Create) -> None:  # noqa: N802
        if self.refuse_shared(tag, command.mailbox):
            return
        self.account.create(command.mailbox, command.special_use)
        self.complete(ok(tag, "CREATE completed"))

    def do_DELETE(self, tag: str, command: MailboxCommand) -> None:  # noqa: N802
        if self.refuse_shared(tag, command.mailbox):
            return
        if self.lookup(command.mailbox) is self.mailbox:
            self.deselect()
        self.account.delete(command.mailbox)
        self.complete(ok(tag, "DELETE completed"))

    def do_RENAME(self, tag: str, command: Rename) -> None:  # noqa: N802
        if self.refuse_shared(tag, command.old, command.new):
            return
        self.account.rename(command.old, command.new)
        self.complete(ok(tag, "RENAME completed"))

    def do_SUBSCRIBE(self, tag: str, command: MailboxCommand, subscribe: bool = True) -> None:  # noqa: N802
        self.lookup(command.mailbox).set_subscribed(subscribe)
        self.complete(ok(tag, "done"))

    def do_UNSUBSCRIBE(self, tag: str, command: MailboxCommand) -> None:  # noqa: N802
        self.do_SUBSCRIBE(tag, command, subscribe=False)

    def do_LIST(self, tag: str, command: List) -> None:  # noqa: N802
        """LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return options, several
        patterns, LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154) attributes."""
        reference, lsub = command.reference, command.lsub
        kind: Literal["LIST", "LSUB"] = "LSUB" if lsub else "LIST"
        select = set(command.select)
        returns = {option.split()[0].upper() for option in command.returns}
        unknown = (select - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}) | (
            returns - {"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"}
        )
        if unknown:
            self.complete(bad(tag, f"Unknown LIST option: {sorted(unknown)[0]}"))
            return
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
            self.complete(bad(tag, "RECURSIVEMATCH needs another selection option (RFC 5258)"))
            return
        if command.patterns == ("",) and not select:
            self.complete(ListResponse(kind, ("\\Noselect",), DELIMITER, "", b""),
                          ok(tag, f"{kind} completed"))  # fmt: skip
            return
        matchers = [_pattern(reference + pattern) for pattern in command.patterns if pattern]
        status_items: tuple[str, ...] = ()
        for option in command.returns:
            if option.upper().startswith("STATUS"):
                status_items = tuple(option[6:].strip(" ()").upper().split())
        owners = [self.account]
        if any((reference + p).startswith(SHARED_PREFIX) for p in command.patterns):
            owners = [self.server.store.shared]  # "*" lists the personal namespace
        boxes = {name: box for owner in owners for name, box in owner.mailboxes.items()}
        names = sorted(boxes, key=lambda n: (n != "INBOX", n))
        subscribed_only = lsub or "SUBSCRIBED" in select
        special_only = "SPECIAL-USE" in select  # RFC 6154: only the special-use mailboxes
        show_subscribed = "SUBSCRIBED" in select or "SUBSCRIBED" in returns
        # Dovecot: a plain LIST tells of children; an extended one only when RETURN (CHILDREN)
        # asks (RFC 5258 leaves it to the server); LSUB never
        with_children = not lsub and ("CHILDREN" in returns or not (select or returns))
        responses: list[Response] = []
        for name in names:
            mailbox = boxes[name]
            if not any(match(name) for match in matchers):
                continue
            chosen = (not subscribed_only or mailbox.subscribed) and (
                not special_only or bool(mailbox.special_use)
            )
            below = [boxes[o] for o in names if o.startswith(name + DELIMITER)]
            extended: tuple[Value, ...] = ()
            if "RECURSIVEMATCH" in select and any(b.subscribed for b in below):
                extended = (["CHILDINFO", [b"SUBSCRIBED"]],)  # RFC 5258 3.5
            if not chosen and not extended:
                continue
            attributes = []  # in Dovecot's order
            if show_subscribed and mailbox.subscribed and not lsub:
                attributes.append("\\Subscribed")
            if with_children:
                attributes.append("\\HasChildren" if below else "\\HasNoChildren")
            if mailbox.special_use:
                attributes.append(mailbox.special_use)
            # No raw name: the codec encodes it (modified UTF-7, or UTF-8 once IMAP4rev2 is on)
            responses.append(ListResponse(kind, tuple(attributes), DELIMITER, name, b"", extended))
            if status_items and chosen:  # LIST-STATUS: STATUS right after its LIST line
                responses.append(self.status_of(mailbox, status_items))
        if lsub and any("%" in p for p in command.patterns):
            # RFC 3501 §6.3.9: a subscribed name below a level that "%" stops at shows its
            # superior at that level, marked \Noselect when the superior is not subscribed.
            listed = {r.name for r in responses if isinstance(r, ListResponse)}
            for name in names:
                if not boxes[name].subscribed:
                    continue
                parts = name.split(DELIMITER)
                for depth in range(1, len(parts)):
                    superior = DELIMITER.join(parts[:depth])
                    if superior not in listed and any(match(superior) for match in matchers):
                        listed.add(superior)
                        responses.append(ListResponse(
                            kind, ("\\Noselect",), DELIMITER, superior, b""
                        ))  # fmt: skip
        self.complete(*responses, ok(tag, f"{kind} completed"))

    def do_LSUB(self, tag: str, command: List) -> None:  # noqa: N802
        self.do_LIST(tag, command)  # the command says lsub=True

    def do_STATUS(self, tag: str, command: Status) -> None:  # noqa: N802
        mailbox = self.lookup(command.mailbox)
        self.complete(self.status_of(mailbox, command.items), ok(tag, "STATUS completed"))

    def status_of(self, mailbox: Mailbox, wanted: tuple[str, ...]) -> StatusResponse:
        values = {
            "MESSAGES": len(mailbox.messages), "UIDNEXT": mailbox.uidnext,
            "UIDVALIDITY": mailbox.uidvalidity, "RECENT": len(mailbox.unclaimed),
            "UNSEEN": sum(1 for m in mailbox.messages if "\\Seen" not in m.flags),
            "HIGHESTMODSEQ": mailbox.highestmodseq,
            "SIZE": sum(len(m.raw) for m in mailbox.messages),
            "DELETED": sum(1 for m in mailbox.messages if "\\Deleted" in m.flags),
        }  # fmt: skip
        return StatusResponse(mailbox.name, {k: values[k] for k in wanted if k in values})

    def do_APPEND(self, tag: str, command: Append) -> None:  # noqa: N802
        """APPEND of one message or several (MULTIAPPEND, RFC 3502: all or none), each perhaps
        put together with CATENATE (RFC 4469)."""
        try:
            mailbox = self.lookup(command.mailbox)
        except StoreError:
            self.complete(no(tag, "Mailbox doesn't exist", "TRYCREATE"))
            return
        messages = []
        for one in (command, *command.more):
            data = one.message
            if one.catenate is not None:
                try:
                    data = b"".join(
                        text if kind == "TEXT" else _catenate.resolve(text.decode(), self.lookup)
                        for kind, text in one.catenate
                    )
                except (_catenate.BadUrlError, UnicodeDecodeError) as exc:
                    url = exc.url if isinstance(exc, _catenate.BadUrlError) else "?"
                    code = ResponseCode("BADURL", url[:200])
                    self.complete(TaggedResponse(tag, "NO", code, f"Bad URL: {exc}"))
                    return
                if len(data) > SERVER_MAX_LITERAL:
                    self.complete(no(tag, "The message would be too large", "TOOBIG"))
                    return
            if not data:  # Dovecot refuses an empty message
                self.complete(no(tag, "Can't save a zero byte message"))
                return
            messages.append((data, one.flags, one.date))
        uids = [mailbox.append(data, flags, date).uid for data, flags, date in messages]
        code = ResponseCode("APPENDUID", AppendUid(mailbox.uidvalidity, compact_sequence(uids)))
        self.complete(ok(tag, "APPEND completed", code))

    def do_SELECT(self, tag: str, command: Select) -> None:  # noqa: N802
        if self.mailbox is not None and (self.rev2 or self.qresync):
            # RFC 9051 7.1 / RFC 7162 3.2.11: the end of the old mailbox's responses
            self.send(UntaggedStatus("OK", ResponseCode("CLOSED"), "Previous mailbox closed"))
        self.deselect()  # a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1)
        mailbox = self.lookup(command.mailbox)
        if command.condstore:
            self.condstore = True
        self.mailbox, self.readonly = mailbox, command.readonly
        self.view = [m.uid for m in mailbox.messages]
        self.recent = set()
        self.take_recent(self.view)
        mailbox.listeners.add(self.on_change)
        unseen = [i for i, m in enumerate(mailbox.messages, 1) if "\\Seen" not in m.flags]
        flags, permanent = self.flag_responses()
        responses: list[Response] = [
            flags,
            *self.exists(),
            permanent,
            UntaggedStatus("OK", ResponseCode("UIDVALIDITY", mailbox.uidvalidity), "UIDs valid"),
            UntaggedStatus("OK", ResponseCode("UIDNEXT", mailbox.uidnext), "Predicted next UID"),
            UntaggedStatus("OK", ResponseCode("HIGHESTMODSEQ", mailbox.highestmodseq), "Highest"),
        ]
        if self.rev2:  # RFC 9051 6.3.2: a LIST response names the mailbox; no UNSEEN code
            below = any(
                name.startswith(mailbox.name + DELIMITER) for name in self.account.mailboxes
            )
            attributes = ("\\HasChildren" if below else "\\HasNoChildren",)
            responses.append(ListResponse("LIST", attributes, DELIMITER, mailbox.name, b""))
        elif unseen:
            responses.append(
                UntaggedStatus("OK", ResponseCode("UNSEEN", unseen[0]), "First unseen")
            )
        if command.qresync is not None:
            if not self.qresync:
                self.deselect()
                self.send(bad(tag, "QRESYNC was not enabled (ENABLE QRESYNC first)"))
                return
            validity, since = command.qresync
            if validity == mailbox.uidvalidity:  # else the client must resync from scratch
                gone = mailbox.vanished_since(since)
                if gone:
                    responses.append(Vanished(compact_sequence(gone), earlier=True))
                responses += [
                    self.fetch_flags(m, with_uid=True) for m in mailbox.messages if m.modseq > since
                ]
        mode = "READ-ONLY" if self.readonly else "READ-WRITE"
        self.send(*responses, ok(tag, f"{command.verb()} completed", ResponseCode(mode)))

    def do_EXAMINE(self, tag: str, command: Select) -> None:  # noqa: N802
        self.do_SELECT(tag, command)

    async def do_IDLE(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        if "IDLE" not in self.capabilities:
            self.send(bad(tag, "IDLE is not supported"))
            return
        self.idle_tag = tag
        self.send(ContinuationRequest("idling"), *self.updates())

    # -- selected -----------------------------------------------------------------------------

    def do_CLOSE(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        if self.mailbox is not None and not self.readonly:
            self.mailbox.expunge(source=self.on_change)  # silently, as CLOSE does
        self.deselect()
        self.send(ok(tag, "CLOSE completed"))

    def do_UNSELECT(self, tag: str, command: ImapCommand) -> None:  # noqa: N802
        self.deselect()
        self.send(ok(tag, "UNSELECT completed"))

    def expunge(self, uids: set[int] | None) -> list[Response]:
        assert self.mailbox is not None
        responses: list[Response] = []
        gone = []
        for uid in self.mailbox.expunge(uids, source=self.on_change):
            if uid in self.view:
                seq = self.view.index(uid) + 1
                self.view.pop(seq - 1)
                gone.append(uid)
                if not self.qresync:
                    responses.append(ExpungeResponse(seq))
        if self.qresync and gone:
            responses.append(Vanished(compact_sequence(gone), earlier=False))
        return responses

    def do_EXPUNGE(self, tag: str, command: Expunge) -> None:  # noqa: N802
        if self.readonly:
            self.complete(no(tag, "Mailbox is read-only", "READ-ONLY"))
            return
        uids = command.uids
        wanted = None if uids is None else {m.uid for _, m in self.messages(uids, uid=True)}
        self.complete(*self.expunge(wanted), ok(tag, "EXPUNGE completed"))

    def matching(self, criteria: str, strings: tuple[str, ...]) -> list[tuple[int, Message]]:
        """(sequence number, message) of the selected messages that meet the criteria."""
        predicate = compile_search(
            criteria, strings, len(self.view), self.view, recent=self.recent, saved=self.saved
        )
        return [(seq, m) for seq, m in self.messages("1:*", uid=False) if predicate(m, seq)]

    def do_SEARCH(self, tag: str, command: Search) -> None:  # noqa: N802
        assert self.mailbox is not None
        returns = command.returns
        if returns is None and self.rev2:  # IMAP4rev2 answers every SEARCH with ESEARCH
            returns = ("ALL",)
        unknown = set(returns or ()) - {"MIN", "MAX", "ALL", "COUNT", "SAVE"}
        if unknown:
            self.complete(bad(tag, f"Unknown SEARCH RETURN option: {sorted(unknown)[0]}"))
            return
        try:
            found = self.matching(command.criteria, command.strings)
        except (SearchError, ValueError) as exc:
            if returns is not None and "SAVE" in returns:
                self.saved = set()  # RFC 5182: a failed SEARCH RETURN (SAVE) empties "$"
            self.complete(bad(tag, str(exc)))
            return
        uid = command.uid
        numbers = [m.uid if uid else seq for seq, m in found]
        if returns is None:
            self.complete(SearchResponse(tuple(numbers)), ok(tag, "SEARCH completed"))
            return
        self.complete(*self.esearch(tag, uid, found, numbers, set(returns) or {"ALL"}),
                      ok(tag, "SEARCH completed"))  # fmt: skip

    def esearch(
        self, tag: str, uid: bool, found: list[tuple[int, Message]], numbers: list[int],
        options: set[str],
    ) -> list[Response]:  # fmt: skip
        """RFC 4731 ESEARCH data, and the RFC 5182 saved result (as UIDs, so it follows the
        mailbox): with MIN and/or MAX only, just those are saved."""
        if "SAVE" in options:
            uids = [m.uid for _, m in found]
            if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
                ends = {"MIN": min(uids, default=None), "MAX": max(uids, default=None)}
                uids = [u for key, u in ends.items() if key in options and u is not None]
            self.saved = set(uids)
            options = options - {"SAVE"}
            if not options:  # RFC 5182: SAVE alone answers nothing but the tagged OK
                return []
        items: dict[str, str | int] = {}
        if numbers and "MIN" in options:
            items["MIN"] = min(numbers)
        if numbers and "MAX" in options:
            items["MAX"] = max(numbers)
        if numbers and "ALL" in options:
            items["ALL"] = compact_sequence(numbers)
        if "COUNT" in options:
            items["COUNT"] = len(numbers)
        return [ESearch(tag, uid, items)]

    def do_SORT(self, tag: str, command: Sort) -> None:  # noqa: N802
        self.sort_or_thread(tag, command)

    def do_THREAD(self, tag: str, command: Thread) -> None:  # noqa: N802
        self.sort_or_thread(tag, command)

    def sort_or_thread(self, tag: str, command: Sort | Thread) -> None:
        verb = command.name
        if command.charset not in ("UTF-8", "US-ASCII"):
            self.complete(no(tag, f"Unsupported charset {command.charset[:40]}", "BADCHARSET"))
            return
        try:
            found = self.matching(command.criteria, command.strings)
            numbered = [(m.uid if command.uid else seq, m) for seq, m in found]
            if isinstance(command, Sort):
                text = " ".join(str(n) for n in _sort.sort(numbered, command.keys))
            else:
                text = _sort.thread(numbered, command.algorithm)
        except (SearchError, _sort.SortError, ValueError) as exc:
            self.complete(bad(tag, str(exc)))
            return
        self.complete(UnknownResponse(verb, text.encode()), ok(tag, f"{verb} completed"))

    def do_FETCH(self, tag: str, command: Fetch) -> None:  # noqa: N802
        uid = command.uid
        items = _fetch_items(command.items)
        if items is None:
            self.complete(bad(tag, "Invalid FETCH items"))
            return
        since = command.changed_since
        responses: list[Response] = []
        if command.vanished:
            if not (uid and self.qresync and since is not None):
                self.complete(bad(tag, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC"))
                return
            assert self.mailbox is not None
            known = set(expand_sequence(command.messages, self.mailbox.uidnext))
            gone = self.mailbox.vanished_since(since, known)
            if gone:
                responses.append(Vanished(compact_sequence(gone), earlier=True))
        for seq, message in self.messages(command.messages, uid):
            if since is not None and message.modseq <= since:
                continue
            try:
                responses.append(self.fetch_one(seq, message, items, uid or since is not None))
            except _mime.UnknownEncodingError as exc:  # RFC 3516 4.2
                text = f"Unknown Content-Transfer-Encoding: {str(exc)[:64]}"
                self.complete(*responses, no(tag, text, "UNKNOWN-CTE"))
                return
        self.complete(*responses, ok(tag, "FETCH completed"))

    def fetch_one(
        self, seq: int, message: Message, items: list[FetchItem],
        with_uid: bool,
    ) -> FetchResponse:  # fmt: skip
        raw_items: dict[str, RawValue] = {}
        sections: dict[str, bytes | bytearray | None] = {}
        mark_seen = False
        size = date = modseq = None
        show_flags = with_uid_item = False
        for name, section, origin, count in items:
            if name == "UID":
                with_uid_item = True
            elif name == "FLAGS":
                show_flags = True
            elif name == "RFC822.SIZE":
                size = len(message.raw)
            elif name == "INTERNALDATE":
                date = internaldate(message)
            elif name == "MODSEQ":
                modseq = message.modseq
            elif name == "ENVELOPE":
                raw_items["ENVELOPE"] = message.envelope
            elif name in ("BODYSTRUCTURE", "BODY") and section is None:
                raw_items[name] = message.body(extensions=name == "BODYSTRUCTURE")
            elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                part = message.parsed
                data = {"RFC822": message.raw, "RFC822.HEADER": part.header,
                        "RFC822.TEXT": part.text}[name]  # fmt: skip
                sections[name] = _no_nuls(data)
                mark_seen |= name != "RFC822.HEADER"
            elif name == "PREVIEW":
                sections["PREVIEW"] = _mime.preview(message.parsed).encode()
            elif name in ("EMAILID", "THREADID"):
                raw_items[name] = RawValue(b"(" + _mime.object_id(message, name).encode() + b")")
            elif name == "BINARY.SIZE" and section is not None:
                data = _mime.decoded(message.parsed, section)
                raw_items[f"BINARY.SIZE[{section}]"] = RawValue(str(len(data)).encode())
            elif name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK") and section is not None:
                if name.startswith("BINARY"):  # decoded, NULs and all (sent as literal8)
                    data = _mime.decoded(message.parsed, section)
                else:  # Dovecot: a literal carries no NUL, so NULs are sent as 0x80
                    data = _no_nuls(_mime.section(message.parsed, section))
                label = f"{name.removesuffix('.PEEK')}[{section}]"
                if origin is not None:
                    data = data[origin : None if count is None else origin + count]
                    label += f"<{origin}>"
                sections[label] = data
                mark_seen |= not name.endswith(".PEEK")
        if mark_seen and not self.readonly and "\\Seen" not in message.flags:
            assert self.mailbox is not None
            self.mailbox.set_flags(message, message.flags | {"\\Seen"}, source=self.on_change)
            show_flags = True
        return FetchResponse(
            seq=seq,
            uid=message.uid if (with_uid or with_uid_item) else None,
            flags=self.flags_of(message) if show_flags else None,
            size=size,
            internaldate_raw=date,
            modseq=modseq
            if modseq is not None
            else (message.modseq if self.condstore and show_flags else None),
            sections=sections,
            items=raw_items,
        )

    def do_STORE(self, tag: str, command: StoreCommand) -> None:  # noqa: N802
        assert self.mailbox is not None
        if self.readonly:
            self.complete(no(tag, "Mailbox is read-only", "READ-ONLY"))
            return
        uid = command.uid
        action, flags = command.action, canonical_flags(command.flags)
        since = command.unchanged_since
        responses: list[Response] = []
        modified: list[int] = []
        for _, message in self.messages(command.messages, uid):
            if since is not None and message.modseq > since:
                modified.append(message.uid if uid else self.view.index(message.uid) + 1)
                continue
            new = (message.flags | flags if action == "+" else
                   message.flags - flags if action == "-" else flags)  # fmt: skip
            self.mailbox.set_flags(message, set(new), source=self.on_change)
            if not command.silent:
                responses.append(self.fetch_flags(message, with_uid=uid))
        code = ResponseCode("MODIFIED", compact_sequence(modified)) if modified else None
        self.complete(*responses, ok(tag, "STORE completed", code))

    def do_COPY(self, tag: str, command: Copy, move: bool = False) -> None:  # noqa: N802
        assert self.mailbox is not None
        try:
            target = self.lookup(command.mailbox)
        except StoreError:
            self.complete(no(tag, "Mailbox doesn't exist", "TRYCREATE"))
            return
        chosen = self.messages(command.messages, command.uid)
        pairs = [(m.uid, target.append(m.raw, m.flags, m.internaldate).uid) for _, m in chosen]
        responses: list[Response] = []
        code = None
        if pairs:
            code = ResponseCode("COPYUID", CopyUid(
                target.uidvalidity, compact_sequence(p[0] for p in pairs),
                compact_sequence(p[1] for p in pairs)))  # fmt: skip
        if move and pairs:
            moved = {p[0] for p in pairs}
            for _, message in chosen:
                message.flags.add("\\Deleted")
            responses = [UntaggedStatus("OK", code, "Moved"), *self.expunge(moved)]
            code = None
        verb = "MOVE" if move else "COPY"
        self.complete(*responses, ok(tag, f"{verb} completed", code))

    def do_MOVE(self, tag: str, command: Copy) -> None:  # noqa: N802
        self.do_COPY(tag, command, move=True)


class _Disconnect(Exception):  # noqa: N818 - control flow: an injected disconnect
    """End the session now, without another byte."""


def _user_of(command: ImapCommand) -> str | None:
    """The user a LOGIN names (so user-specific faults match before authentication)."""
    return command.user if isinstance(command, Login) else None


def _pattern(pattern: str) -> Callable[[str], bool]:
    """LIST wildcards: * matches anything, % anything but the hierarchy delimiter."""
    regex = "".join(
        ".*" if char == "*" else f"[^{re.escape(DELIMITER)}]*" if char == "%" else re.escape(char)
        for char in pattern
    )
    compiled = re.compile(
        regex + r"\Z", re.IGNORECASE if pattern.upper().startswith("INBOX") else 0
    )
    return lambda name: bool(compiled.match(name))


def _fetch_items(text: str) -> list[FetchItem] | None:
    body = text.strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    body = _MACROS.get(body.upper(), body)
    found = []
    pos = 0
    while pos < len(body):
        if body[pos] == " ":
            pos += 1
            continue
        match = _ITEM.match(body, pos)
        if match is None:
            return None
        name, section, origin, count = match.groups()
        if section is not None and not _valid_section(name.upper(), section.upper()):
            return None
        found.append((name.upper(), None if section is None else section.upper(),
                      None if origin is None else int(origin),
                      None if count is None else int(count)))  # fmt: skip
        pos = match.end()
    return found


_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n")
_PART_NUMBER = re.compile(r"[1-9]\d*(?:\.[1-9]\d*)*")


def _valid_section(name: str, section: str) -> bool:
    """BODY[...] takes any section-spec; BINARY[...] and BINARY.SIZE[...] only a part number or
    nothing (RFC 3516 section-binary)."""
    if name.startswith("BINARY"):
        return section == "" or bool(_PART_NUMBER.fullmatch(section))
    if not name.startswith("BODY"):
        return False
    path = _mime.SECTION.fullmatch(section)
    number = path.group(1) if path else None
    return path is not None and (number is None or bool(_PART_NUMBER.fullmatch(number)))


def _no_nuls(data: bytes) -> bytes:
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


@dataclass
class SandboxServer:
    store: Store
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int | None = None
    tls_context: ssl.SSLContext | None = None
    smtp_port: int | None = None
    faults: Faults = field(default_factory=Faults)
    admin_port: int | None = None
    admin: AdminServer | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    sessions: set[asyncio.Task[None]] = field(default_factory=set)
    prelogin_idle_timeout: float = PRELOGIN_IDLE_TIMEOUT
    revisions: tuple[str, ...] = REVISIONS["both"]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.sessions.add(task)
            task.add_done_callback(self.sessions.discard)
        session = Session(self, reader, writer, tls)
        if self.revisions == REVISIONS["rev2"]:
            session.use_rev2()
        try:
            await session.run()
        except asyncio.CancelledError:
            # stop() cancels every session. Ended here, not re-raised: the task's only watchers
            # are stop() and asyncio's start_server, whose callback calls task.exception(),
            # which raises for a cancelled task on Python < 3.11.8 and logs "Exception in
            # callback" with a traceback at each stop with a client connected (cpython
            # gh-113538).
            writer.close()

    async def start(self) -> None:
        plain = await asyncio.start_server(
            lambda r, w: self._serve(r, w, tls=False), self.host, self.port
        )
        self.port = plain.sockets[0].getsockname()[1]
        self.servers.append(plain)
        if self.tls_context is not None and self.tls_port is not None:
            secure = await asyncio.start_server(
                lambda r, w: self._serve(r, w, tls=True), self.host, self.tls_port,
                ssl=self.tls_context,
            )  # fmt: skip
            self.tls_port = secure.sockets[0].getsockname()[1]
            self.servers.append(secure)
        if self.smtp_port is not None:
            loop = asyncio.get_running_loop()
            smtp = await loop.create_server(
                lambda: smtp_factory(self.store, self.faults, self.tls_context),
                self.host,
                self.smtp_port,
            )
            self.smtp_port = smtp.sockets[0].getsockname()[1]
            self.servers.append(smtp)
        if self.admin_port is not None:
            self.admin = AdminServer(self.faults, self.host, self.admin_port)
            await self.admin.start()
            self.admin_port = self.admin.port

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.stop()
        for server in self.servers:
            server.close()
        for task in list(self.sessions):
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()
