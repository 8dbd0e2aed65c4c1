"""Local receivers for what imapscope sends out: a webhook endpoint (that can be told to fail
its first attempts) and an SMTP sink (aiosmtpd), both on loopback."""

from __future__ import annotations

import email
import email.policy
import http.server
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)  # answered 2xx
    requests: list[Delivery] = field(default_factory=list)  # every one that came
    # How to answer the first requests, in order: an HTTP status, "reset" (the connection is
    # reset, no answer) or "hang" (no answer for 3 s: longer than the sender waits).
    failures: list[int | str] = field(default_factory=list)

    def wait(self, count: int, timeout: float = 30) -> list[Delivery]:
        return _wait(lambda: self.deliveries, count, timeout, "webhook deliveries")


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            came = Delivery(dict(self.headers.items()), body)
            receiver.requests.append(came)
            status = receiver.failures.pop(0) if receiver.failures else 204
            if status == "reset":
                linger = struct.pack("ii", 1, 0)  # close at once with a RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
                self.close_connection = True
                return
            if status == "hang":
                time.sleep(3)
                status = 500
            assert isinstance(status, int)
            if status < 300:
                receiver.deliveries.append(came)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/imapscope"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    def wait(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        return _wait(lambda: self.messages, count, timeout, "e-mails")


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    with socket.socket() as probe:  # aiosmtpd's Controller wants a port number up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink(port)

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            sink.messages.append(parsed)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def _wait(found: Callable[[], list[Any]], count: int, timeout: float, what: str) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(found()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found())} {what} after {timeout}s, wanted {count}")
        time.sleep(0.05)
    return list(found())
