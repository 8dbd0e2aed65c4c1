"""The rig works: stdlib imaplib logs in to each real server through each TLS mode, lists folders
and selects INBOX, and the seeder's message count is what the server reports."""

from __future__ import annotations

import imaplib
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imapscope.sandbox import demo as seed
from tests.servers.courier import SHARED_FOLDER
from tests.servers.rig import INSECURE_SOURCE_ADDRESS, RunningServer, TestCA

MODES = ["plain", "starttls", "tls"]


def connect(server: RunningServer, mode: str, context: ssl.SSLContext) -> imaplib.IMAP4:
    if mode == "tls":
        return imaplib.IMAP4_SSL("localhost", server.tls_port, ssl_context=context, timeout=10)
    client = imaplib.IMAP4(server.host, server.port, timeout=10)
    if mode == "starttls":
        client.starttls(ssl_context=context)
    return client


@pytest.mark.parametrize("mode", MODES)
def test_login_list_select_in_every_mode(
    any_server: RunningServer, test_ca: TestCA, mode: str
) -> None:
    client = connect(any_server, mode, test_ca.client_context())
    try:
        if mode == "starttls":
            assert "STARTTLS" not in client.capabilities  # the upgrade really happened
        user = next(iter(any_server.users))
        status, _ = client.login(user, any_server.users[user])
        assert status == "OK"
        status, folders = client.list()
        assert status == "OK"
        assert any(b"INBOX" in line for line in folders if isinstance(line, bytes))
        status, count = client.select("INBOX", readonly=True)
        assert status == "OK"
        assert int(count[0] or b"-1") == any_server.seeded[user] > 0
    finally:
        client.logout()


def test_wrong_password_is_refused(any_server: RunningServer, test_ca: TestCA) -> None:
    client = connect(any_server, "tls", test_ca.client_context())
    try:
        with pytest.raises(imaplib.IMAP4.error):
            client.login(next(iter(any_server.users)), "not-the-password")
    finally:
        client.shutdown()


def test_seeded_flags_and_dates_are_what_the_server_reports(dovecot: RunningServer) -> None:
    expected = list(seed.generate(dovecot.seeded["alice"]))
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    client.login("alice", dovecot.users["alice"])
    client.select("INBOX", readonly=True)
    status, data = client.fetch("1:5", "(FLAGS INTERNALDATE RFC822.SIZE)")
    client.logout()
    assert status == "OK"
    for message, line in zip(expected, data, strict=False):
        assert isinstance(line, bytes)
        flags = set(imaplib.ParseFlags(line)) - {b"\\Recent"}
        assert flags == {flag.encode() for flag in message.flags}
        assert f"RFC822.SIZE {len(message.raw)}".encode() in line
        date = imaplib.Internaldate2tuple(line)
        assert date is not None
        assert date[:5] == message.date.timetuple()[:5]


def test_certificate_names_localhost_and_loopback(dovecot: RunningServer, test_ca: TestCA) -> None:
    context = test_ca.client_context()
    for name in ("localhost", "127.0.0.1"):
        client = imaplib.IMAP4_SSL(name, dovecot.tls_port, ssl_context=context)
        client.logout()


def test_courier_shared_folder_namespace(courier: RunningServer) -> None:
    alice, bob = list(courier.users)
    client = imaplib.IMAP4(courier.host, courier.port)
    client.login(alice, courier.users[alice])
    status, namespace = client.namespace()
    assert status == "OK"
    assert b'"#shared."' in (namespace[0] or b"")
    status, folders = client.list('""', '"#shared.*"')
    client.logout()
    assert status == "OK"
    assert any(f'"#shared.{bob}.{SHARED_FOLDER}"'.encode() in line for line in folders if line)


def test_cyrus_has_a_mailbox_per_user(cyrus: RunningServer) -> None:
    for user, password in cyrus.users.items():
        client = imaplib.IMAP4(cyrus.host, cyrus.port)
        client.login(user, password)
        status, _ = client.select("INBOX")
        client.logout()
        assert status == "OK"


# --- Dovecot variants ---------------------------------------------------------------------------


def test_disable_plaintext_auth_is_visible_off_the_same_address(
    start_dovecot: Callable[..., RunningServer],
) -> None:
    server = start_dovecot(disable_plaintext_auth=True)
    # Same client and server address: Dovecot calls that secure and still offers LOGIN.
    same = imaplib.IMAP4(server.host, server.port)
    assert "LOGINDISABLED" not in same.capabilities
    same.shutdown()
    # From another loopback address it is not secure: LOGINDISABLED, and LOGIN is refused.
    sock = socket.create_connection(
        (server.host, server.port), source_address=(INSECURE_SOURCE_ADDRESS, 0)
    )
    greeting = sock.makefile("rb").readline()
    sock.close()
    assert b"LOGINDISABLED" in greeting


def test_connection_limit(start_dovecot: Callable[..., RunningServer]) -> None:
    server = start_dovecot(max_userip_connections=1)
    first = imaplib.IMAP4(server.host, server.port)
    first.login("alice", server.users["alice"])
    second = imaplib.IMAP4(server.host, server.port)
    with pytest.raises(imaplib.IMAP4.error, match=r"LIMIT|Maximum number of connections"):
        second.login("alice", server.users["alice"])
    second.shutdown()
    first.logout()


def test_capability_override(start_dovecot: Callable[..., RunningServer]) -> None:
    server = start_dovecot(capability="IMAP4rev1 LITERAL+")
    client = imaplib.IMAP4(server.host, server.port)
    client.login("alice", server.users["alice"])
    status, caps = client.capability()
    client.logout()
    assert status == "OK"
    assert (caps[0] or b"").split() == [b"IMAP4rev1", b"LITERAL+"]


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("expired", "certificate has expired"),
        ("wrong_host", "Hostname mismatch"),
        ("self_signed", "unable to get local issuer certificate"),
    ],
)
def test_certificate_variants_fail_verification(
    start_dovecot: Callable[..., RunningServer], test_ca: TestCA, variant: str, reason: str
) -> None:
    cert = getattr(test_ca, variant)(f"{variant}-cert")
    server = start_dovecot(cert=cert)
    with pytest.raises(ssl.SSLCertVerificationError, match=reason):
        imaplib.IMAP4_SSL("localhost", server.tls_port, ssl_context=test_ca.client_context())


def test_stop_leaves_no_process_and_no_directory(
    start_dovecot: Callable[..., RunningServer],
) -> None:
    server = start_dovecot(messages=3)
    assert server.process is not None
    assert server.process.processes_left()  # running: the namespace has processes
    server.stop()
    assert server.process.processes_left() == []
    assert not server.directory.exists()


def test_command_line_entry_starts_describes_and_stops() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers", "dovecot", "--messages", "7"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "ready in" in line:
            break
    text = "".join(lines)
    port = int(text.split("plaintext+STARTTLS port:")[1].split()[0])
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login("alice", "alice-secret-1")
    status, count = client.select("INBOX")
    client.logout()
    assert (status, count[0]) == ("OK", b"7")
    assert "CA file:" in text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    proc.stdout.close()
    directory = text.split("directory:")[1].split()[0]
    assert not os.path.exists(directory)
