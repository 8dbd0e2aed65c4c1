"""A real IMAP server for controlled test environments, on the codec's server role.

STARTTLS and implicit TLS (a CA made on first start), SMTP delivery, users from flags or open
mode, demo data, fault injection (at start, or at runtime through the admin HTTP API), provider
personas and failing TLS certificates (--tls-variant). Mail is in memory, or with a data
directory (``open_store(database=...)``, the CLI's --data-dir) written to SQLite at every change
so a restart loses nothing. A shared namespace ("Shared/") holds folders every user can reach.
Not built yet: MULTIAPPEND (optional), IMAP4rev2.
"""

from __future__ import annotations

from pathlib import Path

from imapscope.sandbox import demo
from imapscope.sandbox._certs import Certificates, ensure_certificates
from imapscope.sandbox._config import ConfigError, SandboxConfig, load_config
from imapscope.sandbox._faults import (
    PERSONAS,
    FaultError,
    FaultRule,
    Faults,
    parse_rule,
    persona,
)
from imapscope.sandbox._persist import Persistence
from imapscope.sandbox._server import REVISIONS, SandboxServer, Session
from imapscope.sandbox._store import Mailbox, Message, Store, StoreError, User

__all__ = [
    "PERSONAS",
    "REVISIONS",
    "Certificates",
    "ConfigError",
    "FaultError",
    "FaultRule",
    "Faults",
    "Mailbox",
    "Message",
    "SandboxConfig",
    "SandboxServer",
    "Session",
    "Store",
    "StoreError",
    "User",
    "build_store",
    "demo",
    "ensure_certificates",
    "load_config",
    "open_store",
    "parse_rule",
    "persona",
]


def build_store(
    users: list[tuple[str, str]], *, open_mode: bool = False, demo_messages: int = 0
) -> Store:
    """A store with these users; ``demo_messages`` realistic messages in each INBOX, and a few
    in Sent and Archive."""
    store = Store(open_mode=open_mode)
    team = store.shared.create("Shared/Team")
    if demo_messages:
        for message in demo.generate(3, seed=99):
            team.append(message.raw, message.flags, message.date.replace(microsecond=0))
    for index, (name, password) in enumerate(users):
        user = store.add_user(name, password)
        if demo_messages:
            messages = list(demo.generate(demo_messages + 10, seed=index + 1))
            for folder, chunk in (("INBOX", messages[:demo_messages]),
                                  ("Sent", messages[demo_messages:demo_messages + 5]),
                                  ("Archive", messages[demo_messages + 5:])):  # fmt: skip
                mailbox = user.get(folder)
                for message in chunk:
                    mailbox.append(message.raw, message.flags, message.date.replace(microsecond=0))
    return store


def open_store(
    users: list[tuple[str, str]],
    *,
    open_mode: bool = False,
    demo_messages: int = 0,
    database: Path | None = None,
) -> Store:
    """The store to serve: in memory, or kept in ``database`` (SQLite) so a restart loses
    nothing. A database with users in it is loaded as it is; listed users it lacks are added."""
    if database is None:
        return build_store(users, open_mode=open_mode, demo_messages=demo_messages)
    persistence = Persistence(database)
    loaded = Store(open_mode=open_mode)
    persistence.load(loaded)
    if not loaded.users:
        store = build_store(users, open_mode=open_mode, demo_messages=demo_messages)
        store.attach(persistence, save=True)
        return store
    loaded.attach(persistence, save=False)
    for name, password in users:
        if name.lower() not in loaded.users:
            loaded.add_user(name, password)
    return loaded


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "imapscope" / "sandbox"
