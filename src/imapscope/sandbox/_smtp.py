"""SMTP into the sandbox (aiosmtpd): mail sent to a user lands in their INBOX and is pushed at
once to every IMAP session watching it.

Recipients are user names or addresses whose local part is a user name; in open mode unknown
recipients become users. Anything else is refused with 550 at RCPT time, so the sender knows.

Submission as production servers do it (Postfix and Dovecot's submission service are the
reference): STARTTLS with the sandbox's certificate, and AUTH PLAIN / LOGIN with a sandbox
user's password, offered only once TLS is on. Mail without AUTH is still delivered (the
sandbox is also the test inbox of applications that send without logging in).

Fault rules name SMTP commands as ``SMTP-AUTH``, ``SMTP-MAIL``, ``SMTP-RCPT`` and ``SMTP-DATA``
(``*`` never matches them, so an IMAP rule never breaks SMTP): ``no`` answers with the rule's
``code`` (an SMTP reply code; by default 535 for AUTH, 550 for MAIL and RCPT, 554 for DATA) and
``text``; ``delay`` waits ``delay_ms`` before answering; ``drop`` (DATA) accepts the message
with 250 and never delivers it, as a broken queue or an overeager filter does; ``junk`` (DATA)
delivers it into the recipient's Junk, as a spam filter does.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from imapscope.sandbox._faults import FaultRule, Faults
from imapscope.sandbox._store import Store

#: The reply code a ``no`` rule answers with when it names none.
DEFAULT_REFUSALS = {"SMTP-AUTH": "535", "SMTP-MAIL": "550", "SMTP-RCPT": "550", "SMTP-DATA": "554"}
ENHANCED = {"535": "5.7.8", "550": "5.7.1", "554": "5.7.1", "451": "4.3.0", "421": "4.3.2"}


def _refusal(rule: FaultRule, verb: str) -> str:
    code = rule.code if rule.code and rule.code.isdigit() else DEFAULT_REFUSALS[verb]
    text = rule.text or ("Authentication credentials invalid" if verb == "SMTP-AUTH"
                         else "Refused by the sandbox's fault rule")  # fmt: skip
    return f"{code} {ENHANCED.get(code, '5.0.0')} {text}"


class DeliveryHandler:
    def __init__(self, store: Store, faults: Faults) -> None:
        self.store = store
        self.faults = faults

    async def _fault(self, verb: str) -> tuple[FaultRule | None, str | None]:
        """The rule that fires for this SMTP command, and the refusal to answer (if any)."""
        rule = self.faults.for_smtp(verb)
        if rule is None:
            return None, None
        if rule.action == "delay":
            await asyncio.sleep(rule.delay_ms / 1000)
            return rule, None
        if rule.action == "no":
            return rule, _refusal(rule, verb)
        return rule, None

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        _rule, refused = await self._fault("SMTP-MAIL")
        if refused:
            return refused
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        _rule, refused = await self._fault("SMTP-RCPT")
        if refused:
            return refused
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
        rule, refused = await self._fault("SMTP-DATA")
        if refused:
            return refused
        if rule is not None and rule.action == "drop":
            return "250 Message accepted for delivery"  # and lost
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        mailbox = "Junk" if rule is not None and rule.action == "junk" else "INBOX"
        for recipient in envelope.rcpt_tos:
            self.store.deliver(recipient, raw, mailbox)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """AUTH PLAIN / LOGIN against the sandbox's users (aiosmtpd's authenticator)."""
        rule = self.faults.for_smtp("SMTP-AUTH")
        if rule is not None and rule.action == "no":
            return AuthResult(success=False, handled=False, message=_refusal(rule, "SMTP-AUTH"))
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = self.store.authenticate(data.login.decode("utf-8", "replace"),
                                       data.password.decode("utf-8", "replace"))  # fmt: skip
        return AuthResult(success=user is not None, handled=False)


def smtp_factory(store: Store, faults: Faults, tls_context: ssl.SSLContext | None = None) -> SMTP:
    handler = DeliveryHandler(store, faults)
    return SMTP(
        handler, hostname="imapscope-sandbox", ident="imapscope sandbox",
        tls_context=tls_context, require_starttls=False,
        authenticator=handler.authenticate, auth_required=False,
        # As Postfix's smtpd_tls_auth_only: no password over plaintext (AUTH is not even
        # offered before STARTTLS). Without a certificate there is no AUTH at all.
        auth_require_tls=True,
    )  # fmt: skip
