"""The service's edge, before any route runs: body size cap, the API token checked before a
body is read, and the security headers every response carries.

A pure ASGI middleware (not FastAPI dependencies, which run after the body has been read and
parsed): a 300 MB body without a token is refused on its headers, not after being read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TokenCheck = Callable[[str], Awaitable[object | None]]

#: Largest request body accepted (an account with a CA certificate is a few KiB; a form post
#: less). Larger ones are refused with 413 on their Content-Length, or as soon as they cross it.
MAX_BODY = 1024 * 1024
#: Paths that need the API token (the web UI has its own session login; /livez and /readyz are
#: for orchestrator probes, which cannot send a token; a Prometheus scrape job can).
TOKEN_PREFIXES = ("/api/", "/metrics")
#: Sent with every response. The UI loads nothing from elsewhere (htmx is vendored) and is never
#: framed; a message's HTML is shown only in a sandboxed frame of its own.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'self'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip
NO_TOKEN_SAID = (
    "this needs a token: send 'Authorization: Bearer <token>' (the first token was printed "  # noqa: S105
    "when serve first started; 'imapscope tokens create' makes another)"
)

BAD_TOKEN_SAID = "the token is not valid (revoked, or mistyped)"  # noqa: S105


class Edge:
    """Wraps the app: see the module docstring. ``check_token`` returns the token's record or
    None; the record is left in ``scope["state"]["token"]`` for the routes."""

    def __init__(self, app: ASGIApp, check_token: TokenCheck, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.check_token = check_token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A response may set its own (a message's HTML, framed by the UI, sets a
                # stricter policy); the others get these.
                own = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in SECURITY_HEADERS if k not in own),
                ]
            await send(message)

        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            await _json(send_with_headers, 413, self._too_large())
            return
        if scope["path"].startswith(TOKEN_PREFIXES):
            token = _bearer(headers.get(b"authorization", b""))
            found = await self.check_token(token) if token else None
            if found is None:
                said = NO_TOKEN_SAID if not token else BAD_TOKEN_SAID
                challenge = [(b"www-authenticate", b"Bearer")]
                await _json(send_with_headers, 401, {"error": said}, challenge)
                return
            scope.setdefault("state", {})["token"] = found
        received = 0
        started = refused = False

        async def counted() -> Message:
            # Over the cap while streaming: answer 413 ourselves and tell the app the client
            # left (whatever the app then tries to send is dropped).
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not refused:
                    refused = True
                    if not started:
                        await _json(send_with_headers, 413, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        await self.app(scope, counted, tracking)

    def _too_large(self) -> dict[str, str]:
        return {"error": f"the request body is over {self.max_body} bytes (or its length is not "
                         "a number); send less"}  # fmt: skip


def _bearer(value: bytes) -> str:
    scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


async def _json(
    send: Send, status: int, body: dict[str, str], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + (extra or [])})  # fmt: skip
    await send({"type": "http.response.body", "body": data})
