"""The sandbox's limits, as a production server has them (Dovecot's are the model): little
before login, a cap per literal and per command after it, an idle timeout before login, and an
answer for every refusal (NO [TOOBIG], or BAD and BYE) instead of a silent hang-up."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from imapscope.imap import NEED_DATA, ServerConnection, TooLarge
from imapscope.sandbox import SandboxServer, build_store
from imapscope.sandbox._server import PRELOGIN_MAX_LINE, PRELOGIN_MAX_LITERAL
from tests.conftest import PASSWORD
from tests.scripted import running


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    store = build_store([("alice", PASSWORD)], demo_messages=1)
    sandbox = SandboxServer(store, port=0, prelogin_idle_timeout=0.5)
    with running(sandbox):
        yield sandbox


def connect(server: SandboxServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    assert sock.recv(4096).startswith(b"* OK")
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def closed(sock: socket.socket) -> bool:
    try:
        rest = sock.recv(65536)
        while rest:
            rest = sock.recv(65536)
    except ConnectionResetError:
        pass
    return True


def test_a_large_literal_before_login_is_refused_without_reading_it(server: SandboxServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"a1 LOGIN alice {62914560}\r\n")  # 60 MB "password"
        answer = read_until(sock, b"a1 ")
        assert b"+ " not in answer  # the data was never asked for
        assert answer.startswith(b"a1 NO [TOOBIG]")
        assert str(PRELOGIN_MAX_LITERAL).encode() in answer
        sock.sendall(b"a2 NOOP\r\n")  # the session goes on
        assert read_until(sock, b"a2 ").startswith(b"a2 OK")


def test_a_non_synchronizing_literal_over_the_limit_is_bad_then_bye(server: SandboxServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"a1 LOGIN alice {62914560+}\r\n")
        answer = read_until(sock, b"* BYE")
        assert b"a1 BAD" in answer
        assert b"Too large" in answer
        assert closed(sock)


def test_an_endless_line_before_login_ends_with_bye(server: SandboxServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"a1 LOGIN " + b"x" * (PRELOGIN_MAX_LINE + 100))
        answer = read_until(sock, b"\r\n")
        assert answer.startswith(b"* BYE Too large")
        assert closed(sock)


def test_an_oversized_append_after_login_is_toobig_and_the_session_goes_on(
    server: SandboxServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(f"a1 LOGIN alice {PASSWORD}\r\n".encode())
        assert b"a1 OK" in read_until(sock, b"a1 ")
        sock.sendall(b"a2 APPEND INBOX {73400320}\r\n")  # 70 MiB, over the 64 MiB cap
        answer = read_until(sock, b"a2 ")
        assert answer.startswith(b"a2 NO [TOOBIG]"), answer
        sock.sendall(b"a3 APPEND INBOX {12}\r\n")
        assert read_until(sock, b"\r\n").startswith(b"+")
        sock.sendall(b"Subject: x\r\n\r\n")
        assert b"a3 OK" in read_until(sock, b"a3 ")


def test_idle_before_login_is_disconnected(server: SandboxServer) -> None:
    with connect(server) as sock:
        answer = read_until(sock, b"\r\n")
        assert answer == b"* BYE Disconnected for inactivity.\r\n"
        assert closed(sock)


def test_one_commands_literals_are_capped_together() -> None:
    conn = ServerConnection()
    conn.set_limits(max_line=1000, max_literal=100, max_command_literals=150)
    conn.receive_data(b"a APPEND INBOX {80}\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().startswith(b"+")
    conn.receive_data(b"x" * 80 + b" {80}\r\n")
    event = conn.next_event()
    assert isinstance(event, TooLarge)
    assert event.tag == "a"
    assert not event.fatal
    assert "total 160 bytes" in event.message
