"""A real IMAP server for controlled test environments, on the codec's server role.

In memory, with STARTTLS and implicit TLS (a CA made on first start), SMTP delivery, users from
flags or open mode, demo data, fault injection (at start, or at runtime through the admin HTTP
API), provider personas and failing TLS certificates (--tls-variant). Not built yet (issue #5
stays open for them): persistence with --data-dir, QRESYNC, a shared namespace.
"""

from __future__ import annotations

from pathlib import Path

from imapscope.sandbox import demo
from imapscope.sandbox._certs import Certificates, ensure_certificates
from imapscope.sandbox._faults import (
    PERSONAS,
    FaultError,
    FaultRule,
    Faults,
    parse_rule,
    persona,
)
from imapscope.sandbox._server import SandboxServer, Session
from imapscope.sandbox._store import Mailbox, Message, Store, StoreError, User

__all__ = [
    "PERSONAS",
    "Certificates",
    "FaultError",
    "FaultRule",
    "Faults",
    "Mailbox",
    "Message",
    "SandboxServer",
    "Session",
    "Store",
    "StoreError",
    "User",
    "build_store",
    "demo",
    "ensure_certificates",
    "parse_rule",
    "persona",
]


def build_store(
    users: list[tuple[str, str]], *, open_mode: bool = False, demo_messages: int = 0
) -> Store:
    """A store with these users; ``demo_messages`` realistic messages in each INBOX, and a few
    in Sent and Archive."""
    store = Store(open_mode=open_mode)
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


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "imapscope" / "sandbox"
