"""Persistence for the sandbox: every change written through to one SQLite file, loaded at start,
so a restart loses nothing (users, folders with their UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ,
messages with their UIDs, flags, dates and MODSEQs)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from imapscope.sandbox._store import SHARED_OWNER, Mailbox, Message, Store, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    user TEXT NOT NULL, name TEXT NOT NULL, uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL, special_use TEXT,
    subscribed INTEGER NOT NULL, PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS messages (
    user TEXT NOT NULL, mailbox TEXT NOT NULL, uid INTEGER NOT NULL, flags TEXT NOT NULL,
    internaldate TEXT NOT NULL, modseq INTEGER NOT NULL, raw BLOB NOT NULL,
    PRIMARY KEY (user, mailbox, uid));
"""


class Persistence:
    """Receives every change from the store (see ``Store.sink``) and writes it at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: one change, one write. Every write comes from the sandbox's one event loop,
        # which may run in another thread than the one that opened the file.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- writes -------------------------------------------------------------------------------

    def user_saved(self, user: User) -> None:
        self.db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (user.name, user.password))

    def mailbox_saved(self, user: str, mailbox: Mailbox) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO mailboxes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user, mailbox.name, mailbox.uidvalidity, mailbox.uidnext, mailbox.highestmodseq,
             mailbox.special_use, int(mailbox.subscribed)),
        )  # fmt: skip

    def mailbox_deleted(self, user: str, name: str) -> None:
        self.db.execute("DELETE FROM messages WHERE user = ? AND mailbox = ?", (user, name))
        self.db.execute("DELETE FROM mailboxes WHERE user = ? AND name = ?", (user, name))

    def message_saved(self, user: str, mailbox: Mailbox, message: Message) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user, mailbox.name, message.uid, " ".join(sorted(message.flags)),
             message.internaldate.isoformat(), message.modseq, message.raw),
        )  # fmt: skip
        self.mailbox_saved(user, mailbox)

    def messages_removed(self, user: str, mailbox: Mailbox, uids: list[int]) -> None:
        self.db.executemany(
            "DELETE FROM messages WHERE user = ? AND mailbox = ? AND uid = ?",
            [(user, mailbox.name, uid) for uid in uids],
        )
        self.mailbox_saved(user, mailbox)

    # -- load ---------------------------------------------------------------------------------

    def load(self, store: Store) -> None:
        """Fill ``store`` with what was saved (before it starts writing here)."""
        for name, password in self.db.execute("SELECT name, password FROM users"):
            if name != SHARED_OWNER:
                store.users[name.lower()] = User(name, password, mailboxes={})

        def owner_of(user: str) -> User | None:
            return store.shared if user == SHARED_OWNER else store.users.get(user.lower())

        for row in self.db.execute("SELECT * FROM mailboxes"):
            user, name, validity, uidnext, modseq, special, subscribed = row
            owner = owner_of(user)
            if owner is not None:
                owner.mailboxes[name] = Mailbox(
                    name, validity, special, bool(subscribed), uidnext, modseq
                )
        rows = self.db.execute("SELECT * FROM messages ORDER BY user, mailbox, uid")
        for user, mailbox, uid, flags, date, modseq, raw in rows:
            owner = owner_of(user)
            box = owner.mailboxes.get(mailbox) if owner else None
            if box is not None:
                stored = set(flags.split())
                box.messages.append(Message(uid, raw, stored, datetime.fromisoformat(date), modseq))
                box.keywords |= {f for f in stored if not f.startswith("\\")}
