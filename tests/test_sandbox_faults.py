"""Every fault the sandbox can inject, with the effect a client sees; most are read back by
imapscope check, which must name them the way it names the real thing."""

from __future__ import annotations

import asyncio
import imaplib
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from imapscope.probe import CheckOptions, Report, run_check
from imapscope.sandbox import FaultError, FaultRule, Faults, SandboxServer, build_store, parse_rule
from imapscope.sandbox import persona as persona_rules
from imapscope.sandbox._certs import ensure_certificates
from tests.scripted import running, sandbox_process

PASSWORD = "pw-for-faults"


@contextmanager
def faulty(
    rules: list[FaultRule], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxServer]:
    certificates = ensure_certificates(tmp_path_factory.mktemp("certs"))
    server = SandboxServer(
        build_store([("alice", PASSWORD)], demo_messages=5), port=0, tls_port=0,
        tls_context=certificates.server_context(), faults=Faults(rules),
    )  # fmt: skip
    with running(server):
        yield server


Checker = Callable[..., Report]


@pytest.fixture
def check_with(tmp_path_factory: pytest.TempPathFactory) -> Checker:
    def run(rules: list[FaultRule], **options: object) -> Report:
        with faulty(rules, tmp_path_factory) as server:
            settings: dict[str, object] = {
                "host": "127.0.0.1", "port": server.port, "security": "plain",
                "allow_plaintext": True, "user": "alice", "password": PASSWORD, "timeout": 2.0,
            }  # fmt: skip
            settings.update(options)
            return asyncio.run(run_check(CheckOptions(**settings)))  # type: ignore[arg-type]

    return run


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings if f.severity != "info"]


@pytest.mark.parametrize(
    ("name", "code"),
    [("gmail-app-password", "APP_PASSWORD_REQUIRED"), ("gmail-web-login", "WEB_LOGIN_REQUIRED"),
     ("microsoft-basic-auth-disabled", "BASIC_AUTH_DISABLED"),
     ("too-many-connections", "TOO_MANY_CONNECTIONS")],
)  # fmt: skip
def test_personas_are_named_by_check(check_with: Checker, name: str, code: str) -> None:
    assert codes(check_with(persona_rules(name))) == [code]


@pytest.mark.parametrize(
    ("spec", "code"),
    [("AUTHENTICATE:no:code=UNAVAILABLE,text=Try later", "SERVER_TEMPORARY_ERROR"),
     ("EXAMINE:no:code=NONEXISTENT,text=No such mailbox", "MAILBOX_NOT_FOUND"),
     ("EXAMINE:bad:text=Oops", "MAILSTORE_UNAVAILABLE"),
     ("LIST:bye:text=Shutting down", "MAILSTORE_UNAVAILABLE"),
     ("IDLE:disconnect", "IDLE_DROPPED"),
     ("*:hide-capability:capability=IDLE", "IDLE_UNSUPPORTED"),
     ("*:logindisabled", "PLAINTEXT_LOGIN_REFUSED"),
     ("GREETING:bye:text=Too busy", "GREETING_BYE"),
     ("GREETING:banner:text=220 mail.example.test ESMTP", "NOT_IMAP_SERVICE"),
     ("GREETING:silence", "SERVER_SILENT")],
)  # fmt: skip
def test_faults_are_named_by_check(check_with: Checker, spec: str, code: str) -> None:
    assert codes(check_with([parse_rule(spec)])) == [code]


def test_a_server_that_byes_every_command_is_not_reported_as_a_login(check_with: Checker) -> None:
    """BYE (and close) for every command: the session ended before any login, so nothing may
    say the login was accepted (it said MAILSTORE_UNAVAILABLE, "Login was accepted", before)."""
    report = check_with([parse_rule("*:bye:text=Go away")])
    assert codes(report) == ["SERVER_TEMPORARY_ERROR"]
    assert report.headline is not None
    assert "ended the session (BYE)" in report.headline.summary
    assert not any("Login was accepted" in f.summary for f in report.findings)
    assert all(s.status != "pass" for s in report.steps if s.name == "authenticate")


def test_hidden_starttls(check_with: Checker) -> None:
    report = check_with([parse_rule("*:hide-capability:capability=STARTTLS")], security="starttls")
    assert codes(report) == ["STARTTLS_NOT_OFFERED"]


def test_count_and_user_limit_the_rule(tmp_path_factory: pytest.TempPathFactory) -> None:
    rule = parse_rule("LOGIN:no:code=UNAVAILABLE,text=Once,count=1,user=alice")
    with faulty([rule], tmp_path_factory) as server:
        for expected in ("NO", "OK"):
            client = imaplib.IMAP4("127.0.0.1", server.port)
            try:
                client.login("alice", PASSWORD)
                outcome = "OK"
            except imaplib.IMAP4.error:
                outcome = "NO"
            client.shutdown()
            assert outcome == expected
    assert rule.count == 0


def test_probability_zero_never_fires(check_with: Checker) -> None:
    assert codes(check_with([parse_rule("LOGIN:bye:probability=0")])) == []


def test_delay_and_throttle_are_felt(tmp_path_factory: pytest.TempPathFactory) -> None:
    rules = [parse_rule("SELECT:delay:delay_ms=400"),
             parse_rule("FETCH:throttle:bytes_per_second=20000")]  # fmt: skip
    with faulty(rules, tmp_path_factory) as server:
        client = imaplib.IMAP4("127.0.0.1", server.port)
        client.login("alice", PASSWORD)
        started = time.perf_counter()
        client.select("INBOX")
        assert time.perf_counter() - started >= 0.4
        started = time.perf_counter()
        _, data = client.fetch("1:5", "(BODY.PEEK[])")
        size = sum(len(part[1]) for part in data if isinstance(part, tuple))
        assert time.perf_counter() - started >= size / 20000 * 0.8
        client.logout()


def fetch_until_closed(port: int, command: bytes) -> bytes:
    """Log in, select INBOX, send ``command`` and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"a LOGIN alice {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
        while not reader.readline().startswith(b"b "):
            pass
        sock.sendall(command + b"\r\n")
        return reader.read()


def test_disconnect_mid_reply_cuts_the_response(tmp_path_factory: pytest.TempPathFactory) -> None:
    with faulty([parse_rule("FETCH:disconnect:when=mid-reply")], tmp_path_factory) as server:
        received = fetch_until_closed(server.port, b"c FETCH 1:5 (ENVELOPE)")
    assert received  # half a reply arrived...
    assert b"c OK" not in received  # ...and never its completion


def test_bad_rules_say_what_is_wrong() -> None:
    for spec, message in [("LOGIN", "COMMAND:ACTION"), ("LOGIN:explode", "action must be"),
                          ("LOGIN:no:colour=red", "unknown setting"),
                          ("*:throttle", "bytes_per_second"),
                          ("*:no:probability=2", "probability")]:  # fmt: skip
        with pytest.raises(FaultError, match=message):
            parse_rule(spec)
    with pytest.raises(FaultError, match="unknown persona"):
        persona_rules("yahoo")


def test_faults_change_at_runtime_through_the_admin_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    data = tmp_path_factory.mktemp("admin")
    proc, text = sandbox_process(
        "--port", "0", "--tls-port", "0", "--smtp-port", "0", "--admin-port", "0",
        "--user", f"alice:{PASSWORD}", "--data-dir", str(data),
    )  # fmt: skip
    port = int(text.split("plaintext+STARTTLS port:")[1].split()[0])
    admin = text.split("admin API (faults):")[1].split()[0]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "imapscope", "sandbox", "fault", *args, "--admin", admin]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def login() -> str:
        client = imaplib.IMAP4("127.0.0.1", port)
        try:
            client.login("alice", PASSWORD)
        except imaplib.IMAP4.error as exc:
            return str(exc)
        finally:
            client.shutdown()
        return "OK"

    try:
        assert login() == "OK"
        added = cli("add", "LOGIN:no:code=UNAVAILABLE,text=Come back later")
        assert added.returncode == 0, added.stderr
        assert "added rule" in added.stdout
        assert "Come back later" in login()
        listed = cli("list")
        assert "LOGIN no" in listed.stdout
        assert cli("add", "--persona", "gmail-web-login").returncode == 0
        assert cli("clear").stdout.strip() == "removed 3 rule(s)"
        assert login() == "OK"
        refused = cli("add", "LOGIN:explode")
        assert refused.returncode == 3
        assert "action must be" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        proc.stdout.close()
    gone = cli("list")
    assert gone.returncode == 3
    assert "is `imapscope sandbox` running?" in " ".join(gone.stderr.split())


@pytest.mark.parametrize(
    ("variant", "code"),
    [("expired", "CERT_EXPIRED"), ("wrong-host", "CERT_HOSTNAME_MISMATCH"),
     ("self-signed", "CERT_UNTRUSTED")],
)  # fmt: skip
def test_tls_variants_are_named_by_check(
    tmp_path_factory: pytest.TempPathFactory, variant: str, code: str
) -> None:
    certificates = ensure_certificates(tmp_path_factory.mktemp("variant"))
    server = SandboxServer(
        build_store([("alice", PASSWORD)]), port=0, tls_port=0,
        tls_context=certificates.server_context(variant),
    )  # fmt: skip
    with running(server):
        options = CheckOptions(host="localhost", port=server.tls_port, security="tls",
                               ca_file=str(certificates.ca_file), timeout=3.0)  # fmt: skip
        report = asyncio.run(run_check(options))
    assert codes(report) == [code]
    with pytest.raises(ValueError, match="TLS variant must be"):
        certificates.server_context("broken")


def test_disconnect_mid_literal(tmp_path_factory: pytest.TempPathFactory) -> None:
    with faulty([parse_rule("FETCH:disconnect:when=mid-literal")], tmp_path_factory) as server:
        received = fetch_until_closed(server.port, b"c FETCH 1 (BODY.PEEK[])")
    marker = re.search(rb"\{(\d+)\}\r\n", received)
    assert marker is not None
    after = len(received) - marker.end()
    assert 0 < after < int(marker.group(1))  # the connection died inside the literal
