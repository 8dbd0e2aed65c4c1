"""SMTP delivery into the sandbox (aiosmtpd): mail sent to a user lands in their INBOX and is
pushed at once to every IMAP session watching it.

Recipients are user names or addresses whose local part is a user name; in open mode unknown
recipients become users. Anything else is refused with 550 at RCPT time, so the sender knows.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from imapscope.sandbox._store import Store


class DeliveryHandler:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local = address.split("@", maxsplit=1)[0].lower()
        if (
            not self.store.open_mode
            and local not in self.store.users
            and (address.lower() not in self.store.users)
        ):
            return f"550 5.1.1 <{address}>: no such user in this sandbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for recipient in envelope.rcpt_tos:
            self.store.deliver(recipient, raw)
        return "250 Message accepted for delivery"


def smtp_factory(store: Store) -> SMTP:
    return SMTP(DeliveryHandler(store), hostname="imapscope-sandbox", ident="imapscope sandbox")
