"""The sandbox's mailboxes, in memory: users, folders, messages, and who is watching.

Real-server behaviour the tests rely on: UIDs only grow and are never reused within a
UIDVALIDITY; \\Deleted messages stay until EXPUNGE; every change raises the mailbox's MODSEQ; and
every change is announced at once to every session that has the mailbox selected (IDLE push).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from imapscope.imap import RawValue, raw_body, raw_envelope
from imapscope.sandbox import _mime

DELIMITER = "/"
SHARED_PREFIX = "Shared/"  # the shared namespace: folders every user can reach
SHARED_OWNER = "#shared"  # the pseudo-user that holds them (never logs in)
SPECIAL_FOLDERS = {
    "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
    "Archive": "\\Archive",
}  # fmt: skip
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_SYSTEM_BY_LOWER = {flag.lower(): flag for flag in SYSTEM_FLAGS}


def canonical_flags(flags: Iterable[str]) -> set[str]:
    """Flags with the system flags in their canonical case: RFC 3501 §2.3.2 makes flag names
    case-insensitive, so ``\\deleted`` *is* ``\\Deleted`` (Dovecot stores it so)."""
    return {_SYSTEM_BY_LOWER.get(flag.lower(), flag) for flag in flags}


class StoreError(Exception):
    """A refused operation; ``code`` is the response code to send (NONEXISTENT, ...)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(eq=False)
class Message:
    uid: int
    raw: bytes
    flags: set[str]
    internaldate: datetime
    modseq: int
    _parsed: _mime.Part | None = None
    _envelope: RawValue | None = None
    _body: RawValue | None = None

    @property
    def parsed(self) -> _mime.Part:
        if self._parsed is None:
            self._parsed = _mime.parse(self.raw)
        return self._parsed

    @property
    def envelope(self) -> RawValue:
        if self._envelope is None:
            self._envelope = raw_envelope(_mime.envelope(self.parsed))
        return self._envelope

    def body(self, extensions: bool) -> RawValue:
        if extensions:
            if self._body is None:
                self._body = raw_body(_mime.structure(self.parsed))
            return self._body
        return raw_body(_mime.structure(self.parsed), extensions=False)


Listener = Callable[["Change"], None]


class Sink(Protocol):
    """Where changes are written (the SQLite persistence of --data-dir)."""

    def user_saved(self, user: User) -> None: ...
    def mailbox_saved(self, user: str, mailbox: Mailbox) -> None: ...
    def mailbox_deleted(self, user: str, name: str) -> None: ...
    def message_saved(self, user: str, mailbox: Mailbox, message: Message) -> None: ...
    def messages_removed(self, user: str, mailbox: Mailbox, uids: list[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class Change:
    """What happened in a mailbox: ``kind`` is "exists", "expunge", "flags" or "keywords" (a
    new keyword was defined; ``uid`` is 0)."""

    kind: str
    uid: int


@dataclass(eq=False)
class Mailbox:
    name: str
    uidvalidity: int
    special_use: str | None = None
    subscribed: bool = True
    uidnext: int = 1
    highestmodseq: int = 1
    messages: list[Message] = field(default_factory=list)
    _index: dict[int, Message] = field(default_factory=dict, repr=False)
    _indexed_list: list[Message] | None = field(default=None, repr=False)
    _indexed_count: int = field(default=0, repr=False)
    listeners: set[Listener] = field(default_factory=set)
    owner: str = ""
    sink: Sink | None = None
    vanished: list[tuple[int, int]] = field(default_factory=list)  # (uid, modseq) tombstones
    # Keywords ever used here: like Dovecot's index, a keyword stays defined once it was set.
    keywords: set[str] = field(default_factory=set)
    # \\Recent (RFC 3501 §2.3.2): messages no read-write session has been told of yet. The first
    # such session to see one (by SELECT, or by an update while it has the mailbox selected)
    # takes it: it shows \\Recent there and in no later session.
    unclaimed: set[int] = field(default_factory=set)

    def claim(self, uids: Iterable[int]) -> set[int]:
        """Take the recent ones among ``uids``; the ones taken."""
        taken = self.unclaimed.intersection(uids)
        self.unclaimed -= taken
        return taken

    def learn(self, flags: set[str]) -> None:
        """New keywords are announced (``keywords``) before the change that carries them, so
        every session sends ``* FLAGS`` before a FETCH shows one (Dovecot does)."""
        new = {f for f in flags if not f.startswith("\\")} - self.keywords
        if new:
            self.keywords |= new
            self.announce(Change("keywords", 0))

    def announce(self, change: Change, source: Listener | None = None) -> None:
        for listener in list(self.listeners):
            # Bound methods are new objects at each access: compare by equality, not identity.
            if listener != source:
                listener(change)

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def append(self, raw: bytes, flags: Iterable[str], when: datetime | None) -> Message:
        flags = canonical_flags(flags)
        self.learn(flags)
        message = Message(
            uid=self.uidnext,
            raw=raw,
            flags=flags,
            internaldate=when or datetime.now(UTC).replace(microsecond=0),
            modseq=self.bump(),
        )
        self.uidnext += 1
        self.messages.append(message)
        self.unclaimed.add(message.uid)
        if self.sink is not None:
            self.sink.message_saved(self.owner, self, message)
        self.announce(Change("exists", message.uid))
        return message

    def set_flags(self, message: Message, flags: set[str], source: Listener | None = None) -> bool:
        flags = canonical_flags(flags)
        if flags == message.flags:
            return False
        self.learn(flags)  # every session, the changing one too: see Session.complete
        message.flags = flags
        message.modseq = self.bump()
        if self.sink is not None:
            self.sink.message_saved(self.owner, self, message)
        self.announce(Change("flags", message.uid), source)
        return True

    def expunge(self, uids: set[int] | None = None, source: Listener | None = None) -> list[int]:
        """Remove \\Deleted messages (only those in ``uids`` when given); return their UIDs."""
        gone = [
            m.uid for m in self.messages
            if "\\Deleted" in m.flags and (uids is None or m.uid in uids)
        ]  # fmt: skip
        if gone:
            removed = set(gone)
            self.messages = [m for m in self.messages if m.uid not in removed]
            self.unclaimed -= removed
            modseq = self.bump()
            self.vanished += [(uid, modseq) for uid in gone]  # for QRESYNC's VANISHED (EARLIER)
            if self.sink is not None:
                self.sink.messages_removed(self.owner, self, gone)
            for uid in gone:
                self.announce(Change("expunge", uid), source)
        return gone

    def set_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        if self.sink is not None:
            self.sink.mailbox_saved(self.owner, self)

    def vanished_since(self, modseq: int, uids: set[int] | None = None) -> list[int]:
        return sorted(u for u, m in self.vanished if m > modseq and (uids is None or u in uids))

    def by_uid(self, uid: int) -> Message | None:
        """The message with this UID, through an index that follows ``messages``: appends are
        added to it, a replaced list (an expunge) rebuilds it."""
        messages = self.messages
        index = self._index
        if self._indexed_list is not messages or self._indexed_count > len(messages):
            index.clear()
            self._indexed_list, self._indexed_count = messages, 0
        if self._indexed_count < len(messages):
            for message in messages[self._indexed_count :]:
                index[message.uid] = message
            self._indexed_count = len(messages)
        return index.get(uid)


_uidvalidity = itertools.count(int(time.time()))


@dataclass(eq=False)
class User:
    name: str
    password: str = field(repr=False)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    sink: Sink | None = None
    standard_folders: bool = True

    def __post_init__(self) -> None:
        if not self.mailboxes and self.standard_folders:
            self.create("INBOX", subscribed=True)
            for name, role in SPECIAL_FOLDERS.items():
                self.create(name, role, subscribed=True)

    def key(self, name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    def get(self, name: str) -> Mailbox:
        mailbox = self.mailboxes.get(self.key(name))
        if mailbox is None:
            raise StoreError("NONEXISTENT", f"Mailbox doesn't exist: {name}")
        return mailbox

    def create(
        self, name: str, special_use: str | None = None, *, subscribed: bool = False
    ) -> Mailbox:
        """RFC 3501 §6.3.3: a trailing delimiter is dropped (``a/b/`` creates ``a/b``), missing
        superiors are created too (``a/b/c`` creates ``a`` and ``a/b``), and CREATE does not
        subscribe (Dovecot's behaviour; only the standard folders start subscribed)."""
        key = self.key(name.rstrip(DELIMITER))
        if not key or key in self.mailboxes:
            raise StoreError("ALREADYEXISTS", f"Mailbox already exists: {name}")
        parts = key.split(DELIMITER)
        for depth in range(1, len(parts)):
            parent = DELIMITER.join(parts[:depth])
            if parent and self.key(parent) not in self.mailboxes:
                self._add(Mailbox(self.key(parent), next(_uidvalidity), None, subscribed=False,
                                  owner=self.name, sink=self.sink))  # fmt: skip
        mailbox = Mailbox(key, next(_uidvalidity), special_use, subscribed=subscribed,
                          owner=self.name, sink=self.sink)  # fmt: skip
        self._add(mailbox)
        return mailbox

    def _add(self, mailbox: Mailbox) -> None:
        self.mailboxes[mailbox.name] = mailbox
        if self.sink is not None:
            self.sink.mailbox_saved(self.name, mailbox)

    def delete(self, name: str) -> None:
        key = self.key(name)
        if key == "INBOX":
            raise StoreError("CANNOT", "INBOX cannot be deleted")
        if key not in self.mailboxes:
            raise StoreError("NONEXISTENT", f"Mailbox doesn't exist: {name}")
        del self.mailboxes[key]
        if self.sink is not None:
            self.sink.mailbox_deleted(self.name, key)

    def rename(self, old: str, new: str) -> None:
        source = self.get(old)
        target = self.key(new)
        if target in self.mailboxes:
            raise StoreError("ALREADYEXISTS", f"Mailbox already exists: {new}")
        if source.name == "INBOX":
            # RFC 9051 6.3.6: renaming INBOX moves its messages and leaves INBOX empty.
            moved = self.create(target)
            for message in source.messages:
                moved.append(message.raw, message.flags, message.internaldate)
            source.messages = []
            return
        del self.mailboxes[source.name]
        if self.sink is not None:
            self.sink.mailbox_deleted(self.name, source.name)
        source.name = target
        source.uidvalidity = next(_uidvalidity)
        self.mailboxes[target] = source
        if self.sink is not None:
            self.sink.mailbox_saved(self.name, source)
            for message in source.messages:
                self.sink.message_saved(self.name, source, message)


@dataclass
class Store:
    """All users' mail. ``open_mode`` creates unknown users on first LOGIN or delivery."""

    users: dict[str, User] = field(default_factory=dict)
    open_mode: bool = False
    sink: Sink | None = None
    shared: User = field(
        default_factory=lambda: User(SHARED_OWNER, "", mailboxes={}, standard_folders=False)
    )

    def add_user(self, name: str, password: str) -> User:
        user = User(name, password)
        self.users[name.lower()] = user
        if self.sink is not None:
            self.attach_user(user)
        return user

    def attach(self, sink: Sink, *, save: bool) -> None:
        """From now on, write every change to ``sink``; ``save`` writes what is there first (a
        new database), and is off for a store just loaded from the same sink."""
        self.sink = sink
        for user in [*self.users.values(), self.shared]:
            self.attach_user(user, save=save)

    def attach_user(self, user: User, *, save: bool = True) -> None:
        assert self.sink is not None
        user.sink = self.sink
        if save:
            self.sink.user_saved(user)
        for mailbox in user.mailboxes.values():
            mailbox.owner, mailbox.sink = user.name, self.sink
            if save:
                self.sink.mailbox_saved(user.name, mailbox)
                for message in mailbox.messages:
                    self.sink.message_saved(user.name, mailbox, message)

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name.lower())
        if user is None and self.open_mode:
            return self.add_user(name, password)
        if user is None or (not self.open_mode and user.password != password):
            return None
        return user

    def deliver(self, recipient: str, raw: bytes, mailbox: str = "INBOX") -> bool:
        """SMTP delivery to ``recipient``'s INBOX (a user name or an address's local part), or
        to another of their mailboxes (a spam filter's Junk)."""
        user = self.users.get(recipient.lower()) or self.users.get(
            recipient.split("@", maxsplit=1)[0].lower()
        )
        if user is None:
            if not self.open_mode:
                return False
            user = self.add_user(recipient.lower(), "")
        user.get(mailbox).append(raw, (), None)
        return True
