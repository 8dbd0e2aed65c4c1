"""One path, one classifier: every failure scenario gets the same finding from ``check`` and
from a ``serve`` account (the sync engine), and the account's error entry carries the finding's
fix and evidence, as the check reports them."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imapscope.imap import Capability, Greeting, ResponseCode
from imapscope.probe import CheckOptions, Finding, run_check
from imapscope.store import AccountSpec, ErrorView, Store
from imapscope.sync import AccountSync, Backoff, SyncOptions
from tests.hostile import hostile
from tests.scripted import CAPABILITIES, ScriptedImap, no, ok, raw_listener, serve
from tests.servers.rig import TestCA, free_port

Scenario = Callable[[TestCA], contextlib.AbstractContextManager[dict[str, Any]]]
TIMEOUT = 2.0


@contextlib.contextmanager
def scripted(server: ScriptedImap, **settings: Any) -> Iterator[dict[str, Any]]:
    with serve(server):
        yield {"host": "127.0.0.1", "port": server.port, "security": "starttls", **settings}


def tls_server(test_ca: TestCA, variant: str) -> ScriptedImap:
    cert = getattr(test_ca, variant)(f"one-path-{variant}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.chain, cert.key)
    return ScriptedImap(tls=context, implicit_tls=True)


def refused(_: TestCA) -> contextlib.AbstractContextManager[dict[str, Any]]:
    return contextlib.nullcontext({"host": "127.0.0.1", "port": free_port(), "security": "tls"})


@contextlib.contextmanager
def banner(text: bytes | None, security: str = "starttls") -> Iterator[dict[str, Any]]:
    with raw_listener(text) as port:
        yield {"host": "127.0.0.1", "port": port, "security": security}


@contextlib.contextmanager
def with_hostile(behaviour: str, security: str = "plain") -> Iterator[dict[str, Any]]:
    with hostile(behaviour) as port:
        yield {"host": "127.0.0.1", "port": port, "security": security}


def login_only(**replies: Any) -> ScriptedImap:
    """A plaintext server that offers LOGIN only (no SASL), with some verbs scripted."""
    caps = ("IMAP4rev1", "IDLE")
    return ScriptedImap(greeting=Greeting("OK", ResponseCode("CAPABILITY", caps), "ready"),
                        capabilities=caps, replies=replies)  # fmt: skip


NO_STARTTLS = tuple(c for c in CAPABILITIES if c != "STARTTLS")
ONLY_OAUTH = ("IMAP4rev1", "LOGINDISABLED", "AUTH=XOAUTH2", "IDLE")
MICROSOFT_WEB = "LOGIN failed. Login to your account via a web browser to verify your identity."

SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "refused port": (refused, "TCP_REFUSED"),
    "silent server": (lambda _: banner(None), "SERVER_SILENT"),
    "SMTP banner": (lambda _: banner(b"220 mail.example.test ESMTP\r\n"), "NOT_IMAP_SERVICE"),
    "POP3 banner": (lambda _: banner(b"+OK POP3 ready\r\n"), "NOT_IMAP_SERVICE"),
    "SSH banner": (lambda _: banner(b"SSH-2.0-OpenSSH_9.2\r\n"), "NOT_IMAP_SERVICE"),
    "SMTP banner, TLS": (lambda _: banner(b"220 mail ESMTP\r\n", "tls"), "NOT_IMAP_SERVICE"),
    "greeting BYE": (lambda _: scripted(ScriptedImap(
        greeting=Greeting("BYE", None, "Too many connections"))), "GREETING_BYE"),
    "TLS on plaintext port": (lambda _: scripted(ScriptedImap(), security="tls"),
                              "TLS_ON_PLAINTEXT_PORT"),
    "STARTTLS on TLS port": (lambda ca: scripted(tls_server(ca, "wrong_host")),
                             "PLAINTEXT_ON_TLS_PORT"),
    "STARTTLS not offered": (lambda _: scripted(ScriptedImap(
        greeting=Greeting("OK", ResponseCode("CAPABILITY", NO_STARTTLS), "ready"),
        capabilities=NO_STARTTLS)), "STARTTLS_NOT_OFFERED"),
    "expired certificate": (lambda ca: scripted(tls_server(ca, "expired"), security="tls",
                                                host="localhost", ca_file=str(ca.ca_file)),
                            "CERT_EXPIRED"),
    "wrong host certificate": (lambda ca: scripted(tls_server(ca, "wrong_host"), security="tls",
                                                   host="localhost", ca_file=str(ca.ca_file)),
                               "CERT_HOSTNAME_MISMATCH"),
    "self-signed certificate": (lambda ca: scripted(tls_server(ca, "self_signed"), security="tls",
                                                    host="localhost", ca_file=str(ca.ca_file)),
                                "CERT_UNTRUSTED"),
    "pinned certificate replaced": (lambda ca: scripted(tls_server(ca, "self_signed"),
                                                        security="tls", host="localhost",
                                                        pin_sha256="ab" * 32),
                                    "CERT_PIN_MISMATCH"),
    "wrong password": (lambda _: scripted(login_only(
        LOGIN=lambda tag, c: [no(tag, "Authentication failed.",
                                 ResponseCode("AUTHENTICATIONFAILED"))]), security="plain"),
        "AUTH_FAILED"),
    "Microsoft web login": (lambda _: scripted(ScriptedImap(
        capabilities=("IMAP4rev1", "IDLE"),
        greeting=Greeting("OK", None, "The Microsoft Exchange IMAP4 service is ready."),
        replies={"LOGIN": lambda tag, c: [no(tag, MICROSOFT_WEB)]}), security="plain"),
        "WEB_LOGIN_REQUIRED"),
    "LOGINDISABLED, only XOAUTH2": (lambda _: scripted(ScriptedImap(
        greeting=Greeting("OK", ResponseCode("CAPABILITY", ONLY_OAUTH), "ready"),
        capabilities=ONLY_OAUTH), security="plain"), "PLAINTEXT_LOGIN_REFUSED"),
    "mail store fails at login": (lambda _: scripted(login_only(
        LOGIN=lambda tag, c: [ok(tag, "Logged in, but initialization failed.")]),
        security="plain"), "MAILSTORE_UNAVAILABLE"),
    "SERVERBUG at SELECT": (lambda _: scripted(ScriptedImap(replies={
        "EXAMINE": lambda tag, c: [no(tag, "Internal error", ResponseCode("SERVERBUG"))]}),
        security="plain"), "MAILSTORE_UNAVAILABLE"),
    "not connected at SELECT": (lambda _: scripted(ScriptedImap(replies={
        "EXAMINE": lambda tag, c: [no(tag, "Authenticated but not connected")]}),
        security="plain"), "MAILSTORE_UNAVAILABLE"),
    "no such mailbox": (lambda _: scripted(ScriptedImap(replies={
        "EXAMINE": lambda tag, c: [no(tag, "Mailbox doesn't exist: INBOX",
                                      ResponseCode("NONEXISTENT"))]}), security="plain"),
        "MAILBOX_NOT_FOUND"),
    "trickled greeting": (lambda _: with_hostile("trickle_greeting"), "STEP_DEADLINE_EXCEEDED"),
    "BYE every half second": (lambda _: with_hostile("bye_every_command"),
                              "STEP_DEADLINE_EXCEEDED"),
    "four huge literals": (lambda _: with_hostile("huge_literals"), "RESPONSE_TOO_LARGE"),
    "garbage certificate": (lambda _: with_hostile("garbage_certificate", "tls"),
                            "CERT_MALFORMED"),
}  # fmt: skip


def check_headline(settings: dict[str, Any]) -> Finding:
    security = settings["security"]
    options = CheckOptions(
        host=settings["host"], port=settings["port"], security=security, user="alice",
        password="right-password", ca_file=settings.get("ca_file"), timeout=TIMEOUT,
        allow_plaintext=security == "plain", pin_sha256=settings.get("pin_sha256"),
    )  # fmt: skip
    report = asyncio.run(run_check(options))
    assert report.headline is not None, report.steps
    return report.headline


def serve_error(settings: dict[str, Any], tmp_path: Path) -> ErrorView:
    security = "none" if settings["security"] == "plain" else settings["security"]
    spec = AccountSpec(
        email="alice@example.test", host=settings["host"], port=settings["port"],
        security=security, username="alice", poll_interval=60,
        pin_sha256=settings.get("pin_sha256"),
    )  # fmt: skip
    options = SyncOptions(ca_file=settings.get("ca_file"), timeout=TIMEOUT,
                          backoff=Backoff(first=60))  # fmt: skip

    async def first_error() -> ErrorView:
        store = await Store.open(tmp_path / "data")
        added = await store.add_account(spec, "right-password")
        task = asyncio.create_task(AccountSync(store, added.id, options).run())
        try:
            async with asyncio.timeout(30):
                while not (errors := await store.errors(added.id)):
                    await asyncio.sleep(0.05)
            return errors[-1]
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=10)
            assert task.done(), "the supervisor ignored its cancellation"
            await store.close()

    return asyncio.run(first_error())


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_check_and_serve_name_a_failure_the_same_way(
    name: str, test_ca: TestCA, tmp_path: Path
) -> None:
    scenario, code = SCENARIOS[name]
    with scenario(test_ca) as settings:
        headline = check_headline(settings)
        error = serve_error(settings, tmp_path)
    assert headline.code == code, headline
    assert error.code == code, error
    assert error.fix == headline.fix
    if error.step == headline.step:  # the same step: the same words (others name their step)
        assert error.message == headline.summary
    assert bool(error.evidence) == bool(headline.evidence)


def test_capability_listing_is_not_needed_for_the_same_answer() -> None:
    """A server that lists capabilities only when asked is gated the same way."""
    server = ScriptedImap(
        greeting=Greeting("OK", None, "ready"),
        replies={"CAPABILITY": lambda tag, c: [Capability(ONLY_OAUTH), ok(tag)]},
    )
    with scripted(server, security="plain") as settings:
        assert check_headline(settings).code == "PLAINTEXT_LOGIN_REFUSED"
