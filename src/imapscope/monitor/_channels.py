"""Sending notifications: to any service through Apprise (one URL per channel: mailto://,
slack://, msteams://, tgram://, discord://, matrix://, ntfy://, pagerduty://, ...; the list is
Apprise's: https://github.com/caronc/apprise/wiki), or as a JSON webhook signed by the Standard
Webhooks specification (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
HMAC-SHA256 of id.timestamp.body>``), the id being the same on every attempt.

A channel's URL carries its secrets (a token, a password); it is sealed in the store, shown
masked (Apprise's own privacy form), and any part of it is cut from the errors a failed
attempt reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.charset
import functools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from imapscope.store import CHANNEL_KINDS, StoreError
from imapscope.webhooks._http import check_url, new_secret, post, redact, session

APPRISE_LIST = "https://github.com/caronc/apprise/wiki"
#: Apprise reports what went wrong through its log; one send at a time is captured.
_apprise_turn = asyncio.Lock()


class ChannelError(Exception):
    """An attempt failed; the text says why (with the channel's secrets cut out)."""


@functools.cache
def _apprise() -> Any:
    """Apprise, with its plugins loaded, and the process's e-mail settings as they were.

    Its e-mail plugin, when it loads, re-registers the utf-8 charset for the whole process
    (quoted-printable instead of base64): every e-mail this process makes afterwards (the
    sandbox's demo mail, a round trip's probe) would change its bytes. The registry is put back
    once the plugins are in."""
    tables: list[dict[Any, Any]] = [
        email.charset.CHARSETS, email.charset.ALIASES, email.charset.CODEC_MAP,
    ]  # fmt: skip
    saved = [dict(table) for table in tables]
    import apprise  # noqa: PLC0415 - 190 plugins load in a third of a second: only when used

    apprise.Apprise.instantiate("json://localhost", suppress_exceptions=True)  # loads them all
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)
    return apprise


def prepare(kind: str, url: str) -> tuple[str, str | None]:
    """Check a channel's URL before it is saved: its masked form, and (for a webhook) a new
    signing secret. A :class:`StoreError` says what is wrong and where to look."""
    url = url.strip()
    if kind not in CHANNEL_KINDS:
        raise StoreError(f"channel kind {kind!r} is unknown; use {', '.join(CHANNEL_KINDS)}")
    if len(url) > 2000:
        raise StoreError("the channel URL is longer than 2000 characters")
    if kind == "webhook":
        try:
            shown = check_url(url)
        except StoreError as exc:
            raise StoreError(
                f"{exc}; for other services use kind apprise (see {APPRISE_LIST})"
            ) from None
        return shown, new_secret()
    apprise = _apprise()
    with apprise.LogCapture(level=logging.WARNING) as said:
        found = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if found is None:
        why = _last_line(said.getvalue(), url) or "Apprise cannot read it"
        raise StoreError(
            f"the notification URL {_scheme(url)}://... is not one Apprise knows ({why}); "
            f"the services and their URL forms are listed at {APPRISE_LIST}"
        )
    return str(found.url(privacy=True)), None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0][:40] if "://" in url else url[:20]


def _last_line(log: str, url: str) -> str:
    lines = [line.split(" - ", 2)[-1] for line in log.strip().splitlines() if line.strip()]
    return redact(lines[-1], url) if lines else ""


async def send(
    kind: str, url: str, signing_secret: str | None, message: dict[str, Any], *, message_id: str,
    attachment: tuple[str, bytes] | None = None,
) -> None:  # fmt: skip
    """Send one message (with a file: its name and bytes, for services that take files; a
    webhook's data carries what the file holds); :class:`ChannelError` when it did not arrive."""
    if kind == "webhook":
        assert signing_secret is not None
        await _send_webhook(url, signing_secret, message, message_id)
        return
    apprise = _apprise()
    async with _apprise_turn:
        with apprise.LogCapture(level=logging.WARNING) as said, tempfile.TemporaryDirectory() as d:
            notifier = apprise.Apprise()
            notifier.add(url)
            files = None
            if attachment is not None:
                path = Path(d) / attachment[0]
                path.write_bytes(attachment[1])
                files = apprise.AppriseAttachment(str(path))
            delivered = await asyncio.to_thread(
                notifier.notify, body=message["body"], title=message["title"], attach=files
            )
    if not delivered:
        why = _last_line(said.getvalue(), url) or "the service did not accept it"
        raise ChannelError(f"{why} (check the channel's URL and that the service is reachable)")


async def _send_webhook(url: str, secret: str, message: dict[str, Any], message_id: str) -> None:
    payload = {
        "type": message.get("type", "notification"),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "data": message["data"] | {"title": message["title"], "text": message["body"]},
    }
    body = json.dumps(payload, separators=(",", ":"))
    async with session() as client:
        attempt = await post(client, url, [secret], message_id, body)
    if attempt.status is None:
        raise ChannelError(f"the webhook could not be reached: {attempt.said}")
    if not attempt.ok:
        raise ChannelError(f"the webhook answered {attempt.status}"
                           + (f": {attempt.said}" if attempt.said else ""))  # fmt: skip
