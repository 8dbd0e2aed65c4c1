"""A round trip: submit a uniquely tagged message over SMTP to a registered account's address,
and watch it arrive through that account's sync (IDLE on the INBOX, and the Junk folder as the
account's sync sees it). Three steps, each timed: ``submit`` (SMTP accepted the message),
``deliver`` (it appeared in the mailbox) and ``cleanup`` (the probe deleted again). A failure
names the leg that broke with a finding code (``SMTP_*`` for the send leg, ``DELIVERY_*`` for
the receive leg).

The message is found by its tag in the subject among the account's ``message.new`` events
written after the submission started, so it works whichever worker syncs the account.
Cleanup marks the probe ``\\Deleted`` and removes it with UID EXPUNGE (UIDPLUS); a server
without UIDPLUS keeps it marked (a plain EXPUNGE would also remove what the user had marked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from imapscope.findings import Finding, finding
from imapscope.imap import Expunge
from imapscope.imap import Store as StoreFlags
from imapscope.net import client_context
from imapscope.session import select
from imapscope.store import MonitorView, RunRecord, Store
from imapscope.sync import SyncOptions, connect

log = logging.getLogger("imapscope.monitor")

SUBJECT = "imapscope round trip"
#: The names a Junk folder goes by (as the check ladder knows them), lower-cased last segment.
JUNK_NAMES = ("junk", "spam", "junk e-mail", "junk email", "bulk mail", "spamverdacht",
              "indésirables", "correo no deseado", "спам")  # fmt: skip
#: How often the account's events are looked at while waiting.
WATCH_EVERY = 0.1
#: States in which the account's sync sees new mail.
WATCHING = ("idle", "syncing", "connecting", "backoff")


class LegFailure(Exception):  # noqa: N818 - carries a finding
    def __init__(self, found: Finding) -> None:
        super().__init__(found.summary)
        self.finding = found


def _mask(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return f"{exc.smtp_code} {text}".strip()


def _failed(code: str, *evidence: str) -> LegFailure:
    return LegFailure(finding(code, "submit", evidence=list(evidence)))


def submit(
    smtp: dict[str, Any], password: str | None, message: EmailMessage, recipient: str, *,
    timeout: float, context: ssl.SSLContext,
) -> None:  # fmt: skip
    """Send ``message`` (blocking: run it in a thread); :class:`LegFailure` names what broke.
    The server's replies are evidence, with the password masked should it be repeated."""
    host, port, security, user = smtp["host"], smtp["port"], smtp["security"], smtp.get("user")
    where = f"{host}:{port} ({security})"
    try:
        client: smtplib.SMTP
        if security == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo()
            if security == "starttls":
                if not client.has_extn("starttls"):
                    raise _failed("SMTP_STARTTLS_UNSUPPORTED", f"{where}: EHLO lists no STARTTLS")
                client.starttls(context=context)
                client.ehlo()
            if user:
                if not client.has_extn("auth"):
                    raise _failed("SMTP_AUTH_UNSUPPORTED", f"{where}: EHLO lists no AUTH")
                client.login(user, password or "")
            client.send_message(message, from_addr=smtp["from"], to_addrs=[recipient])
    except LegFailure:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise _failed("SMTP_AUTH_FAILED", _mask(_reply(exc), password)) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise _failed("SMTP_AUTH_UNSUPPORTED", f"{where}: {exc}") from None
    except smtplib.SMTPSenderRefused as exc:
        raise _failed("SMTP_SENDER_REFUSED", _mask(_reply(exc), password)) from None
    except smtplib.SMTPRecipientsRefused as exc:
        said = [f"{who}: {code} {text.decode('utf-8', 'replace')}"
                for who, (code, text) in exc.recipients.items()]  # fmt: skip
        raise _failed("SMTP_RECIPIENT_REFUSED", *said) from None
    except smtplib.SMTPDataError as exc:
        raise _failed("SMTP_MESSAGE_REFUSED", _mask(_reply(exc), password)) from None
    except ssl.SSLError as exc:
        raise _failed("SMTP_TLS_FAILED", f"{where}: {exc.reason or exc}") from None
    except TimeoutError as exc:
        raise _failed("SMTP_TIMEOUT", f"{where}: no answer within {timeout:g} s ({exc})") from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read that timed out as a disconnection ("... closed: timed out").
        code = ("SMTP_TIMEOUT" if "timed out" in str(exc)
                else "SMTP_TLS_FAILED" if security == "tls" else "SMTP_CONNECT_FAILED")  # fmt: skip
        raise _failed(code, f"{where}: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise _failed("SMTP_CONNECT_FAILED", f"{where}: {type(exc).__name__}: {exc}") from None


def probe_message(sender: str, recipient: str, token: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"{SUBJECT} {token}"
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{token}@imapscope.invalid>"
    message["X-Imapscope-Probe"] = token
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a probe
    message.set_content(
        "This message was sent by imapscope to time mail delivery to this mailbox. It is "
        "deleted automatically once it arrives.\n"
    )
    return message


def is_junk(folder: str) -> bool:
    leaf = folder.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    return leaf.strip().lower() in JUNK_NAMES


@dataclasses.dataclass
class RoundTrip:
    """One run of a round-trip monitor. ``clock`` is monotonic seconds (injectable)."""

    store: Store
    options: SyncOptions
    monitor: MonitorView
    clock: Callable[[], float] = time.monotonic
    #: Called before the receive leg waits, with how long it may (to keep the job's claim).
    on_wait: Callable[[float], Any] | None = None

    async def run(self, at: Any) -> RunRecord:
        smtp = self.monitor.spec.smtp
        assert self.monitor.spec.account_id is not None
        account = await self.store.account(self.monitor.spec.account_id)
        token = "rt-" + secrets.token_hex(8)
        message = probe_message(smtp["from"], account.spec.email, token)
        steps: list[tuple[str, str, float]] = []
        started = self.clock()
        if account.paused or account.state not in WATCHING:
            state = "paused" if account.paused else account.state
            found = finding("DELIVERY_UNWATCHED", "deliver",
                            evidence=[f"account {account.id} is {state}"])  # fmt: skip
            return _record(at, "fail", found, steps, started=started, clock=self.clock)
        cursor = await self.store.last_event_id()
        password = await self.store.monitor_secret(self.monitor.id)
        context = client_context(self.options.ca_file, self.options.insecure)
        try:
            await asyncio.to_thread(submit, smtp, password, message, account.spec.email,
                                    timeout=self.options.timeout, context=context)  # fmt: skip
        except LegFailure as exc:
            steps.append(("submit", "fail", _ms(started, self.clock)))
            return _record(at, "fail", exc.finding, steps, started=started, clock=self.clock)
        sent = self.clock()
        steps.append(("submit", "pass", (sent - started) * 1000))
        deadline = float(smtp["deadline"])
        if self.on_wait is not None:
            await self.on_wait(deadline + 60)
        arrived = await self._watch(account.id, token, cursor, sent + deadline)
        if arrived is None:
            steps.append(("deliver", "fail", _ms(sent, self.clock)))
            lost = finding("DELIVERY_LOST", "deliver", evidence=[
                f"Message-ID {message['Message-ID']} to {account.spec.email}, accepted by "
                f"{smtp['host']}:{smtp['port']}, not seen within {deadline:g} s"])  # fmt: skip
            return _record(at, "fail", lost, steps, started=started, clock=self.clock)
        folder, uid, seen_at = arrived
        steps.append(("deliver", "warn" if is_junk(folder) else "pass", (seen_at - sent) * 1000))
        cleaning = self.clock()
        cleaned = await self._delete(account.id, folder, uid)
        steps.append(("cleanup", "pass" if cleaned else "warn", _ms(cleaning, self.clock)))
        if is_junk(folder):
            junk = finding("DELIVERY_JUNK", "deliver", evidence=[
                f"Message-ID {message['Message-ID']} arrived in {folder!r}"])  # fmt: skip
            return _record(at, "warning", junk, steps, started=started, clock=self.clock)
        return _record(at, "ok", None, steps, started=started, clock=self.clock)

    async def _watch(
        self, account_id: int, token: str, cursor: int, until: float
    ) -> tuple[str, int, float] | None:
        """The probe's folder, UID and when it was seen, or None by ``until``."""
        while True:
            batch = await self.store.events(after=cursor, limit=1000)
            now = self.clock()
            for event in batch:
                cursor = event.id
                if (event.account_id == account_id and event.kind == "message.new"
                        and token in str(event.data.get("subject") or "")):  # fmt: skip
                    return str(event.data["folder"]), int(event.data["uid"]), now
            if now >= until:
                return None
            if len(batch) < 1000:
                await asyncio.sleep(min(WATCH_EVERY, max(0.0, until - now)))

    async def _delete(self, account_id: int, folder: str, uid: int) -> bool:
        """Remove the probe from the server; False when it could not (it is then logged)."""
        try:
            account = await self.store.account(account_id)
            conn = await connect(self.store, account, self.options)
            try:
                await select(conn, folder, readonly=False)
                await conn.run(StoreFlags(str(uid), ("\\Deleted",), "+", silent=True, uid=True))
                if "UIDPLUS" not in conn.codec.capabilities:
                    return False
                await conn.run(Expunge(uids=str(uid)))
                return True
            finally:
                await conn.close()
        except Exception as exc:  # cleanup is best effort: the run's outcome stands
            log.warning("round trip %s: the probe could not be deleted: %s", self.monitor.id, exc)
            return False


def _ms(since: float, clock: Callable[[], float]) -> float:
    return (clock() - since) * 1000


def _record(
    at: Any, status: str, found: Finding | None, steps: list[tuple[str, str, float]], *,
    started: float, clock: Callable[[], float],
) -> RunRecord:  # fmt: skip
    return RunRecord(
        at=at, status=status, code=found.code if found else None,
        summary=found.summary if found else "", fix=found.fix if found else "",
        evidence=found.evidence if found else (), total_ms=round(_ms(started, clock), 1),
        steps=tuple((n, s, round(ms, 1)) for n, s, ms in steps),
    )  # fmt: skip
