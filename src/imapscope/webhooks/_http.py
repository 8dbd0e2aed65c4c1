"""Signed JSON over HTTP, by the Standard Webhooks specification: ``webhook-id`` (the same on
every attempt of one message), ``webhook-timestamp`` (the attempt's, in seconds) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per valid secret,
separated by spaces (during a rotation both the new and the old secret sign). Used by webhook
endpoints and by monitor channels of kind ``webhook``.

A URL may carry secrets (a token in its path or query): it is shown masked, and every part of
it that could be secret is cut from what an attempt reports."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imapscope.store import StoreError

if TYPE_CHECKING:
    import aiohttp

# aiohttp is imported when a message is first sent (about 0.1 s that serve's start need not pay
# while no endpoint or channel is configured).

__all__ = ["RESPONSE_EXCERPT", "TIMEOUT", "Attempt", "check_url", "new_secret", "post", "redact",
           "session", "sign"]  # fmt: skip

#: A receiver has this long to answer before the attempt counts as failed.
TIMEOUT = 10.0
#: The part of a receiver's answer kept with an attempt.
RESPONSE_EXCERPT = 300


def check_url(url: str, what: str = "a webhook URL") -> str:
    """The URL's masked form; a :class:`StoreError` when it is not http(s) with a host."""
    url = url.strip()
    if len(url) > 2000:
        raise StoreError(f"{what} is longer than 2000 characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        scheme = url.split("://", 1)[0][:40] if "://" in url else url[:20]
        raise StoreError(f"{what} is http:// or https:// with a host, not {scheme!r}")
    return urllib.parse.urlunsplit(
        (parts.scheme, _host_port(parts), parts.path, "***" if parts.query else "", "")
    )


def new_secret() -> str:
    """A signing secret in the form Standard Webhooks libraries take (``whsec_`` + base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _host_port(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port}" if parts.port else host


def _secret_parts(url: str) -> list[str]:
    """Every part of a URL that may be secret: user info, path segments, query values."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.password or "", parts.username or ""]
    found += [seg for seg in re.split(r"[/#]", parts.path) if seg]
    found += [v for _, v in urllib.parse.parse_qsl(parts.query)]
    # Hosts are not secret, but a token often sits where Apprise reads a host (slack://T/B/C).
    if parts.hostname and "." not in parts.hostname:
        found.append(parts.hostname)
    return sorted({p for p in found if len(p) >= 4}, key=len, reverse=True)


def redact(text: str, url: str) -> str:
    for part in _secret_parts(url):
        for form in {part, urllib.parse.quote(part, safe=""), urllib.parse.unquote(part)}:
            text = text.replace(form, "***")
    return text


def sign(keys: Sequence[str], message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<signature>`` per key, space-separated."""
    from standardwebhooks.webhooks import Webhook  # noqa: PLC0415

    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return " ".join(str(Webhook(key).sign(message_id, when, body)) for key in keys)


class Attempt:
    """How one POST went: ``ok`` (a 2xx), the status (None: no answer), ms, and what happened
    (the answer's excerpt or the failure, secrets cut)."""

    __slots__ = ("ms", "ok", "said", "status")

    def __init__(self, ok: bool, status: int | None, ms: int, said: str) -> None:
        self.ok, self.status, self.ms, self.said = ok, status, ms, said


async def post(
    session: aiohttp.ClientSession, url: str, keys: Sequence[str], message_id: str, body: str
) -> Attempt:
    """POST one signed message; redirects are not followed (a 3xx is a failure: the receiver's
    URL moved, and its new one is not for us to guess)."""
    import aiohttp  # noqa: PLC0415

    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, message_id, timestamp, body),
        "user-agent": "imapscope",
    }
    started = time.perf_counter()
    try:
        async with session.post(
            url, data=body.encode(), headers=headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as answer:  # fmt: skip
            start = await answer.content.read(RESPONSE_EXCERPT)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        ms = round((time.perf_counter() - started) * 1000)
        return Attempt(False, None, ms, redact(_failure(exc), url))
    ms = round((time.perf_counter() - started) * 1000)
    excerpt = redact(" ".join(start.decode("utf-8", "replace").split()), url)
    return Attempt(200 <= status < 300, status, ms, excerpt)


def session() -> aiohttp.ClientSession:
    """A client session for webhook deliveries: keep-alive connections, up to 400 at once."""
    import aiohttp  # noqa: PLC0415

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400))


def _failure(exc: BaseException) -> str:
    """What went wrong, for the delivery log."""
    import aiohttp  # noqa: PLC0415

    detail = f" ({exc})" if str(exc) else ""
    if isinstance(exc, TimeoutError):
        what = f"no answer within {TIMEOUT:g} s"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        what = "could not connect"
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
                    | aiohttp.ClientPayloadError):  # fmt: skip
        what = "the connection was closed or reset before an answer"
    else:
        what = "the request failed"
    return f"{what}: {type(exc).__name__}{detail}"
