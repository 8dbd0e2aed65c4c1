"""The client codec against real Dovecot, Courier-IMAP and Cyrus.

Every TLS mode, LOGIN and SASL, LIST/NAMESPACE/SELECT, a full FETCH of the seeded mailbox compared
with the seeder, pipelining, literals both ways, IDLE push from a second connection, and a
redacted log."""

from __future__ import annotations

import pytest

from imapscope.imap import (
    Append,
    Capability,
    CapabilityCommand,
    Create,
    Delete,
    Exists,
    Expunge,
    Fetch,
    FetchResponse,
    Idle,
    List,
    ListResponse,
    Login,
    Logout,
    Mechanism,
    Namespace,
    NamespaceResponse,
    Noop,
    Select,
    State,
    Store,
)
from imapscope.sandbox import demo as seed
from tests.imap_driver import Driver
from tests.servers.rig import RunningServer, TestCA


def login(server: RunningServer, test_ca: TestCA, mode: str = "starttls") -> Driver:
    if mode == "tls":
        driver = Driver(server.host, server.tls_port, test_ca.client_context())
    else:
        driver = Driver(server.host, server.port)
        if mode == "starttls":
            assert driver.starttls(test_ca.client_context()).status == "OK"
    user = next(iter(server.users))
    done, _ = driver.run(Login(user, server.users[user]))
    assert done.status == "OK", done
    assert driver.conn.state is State.AUTHENTICATED
    return driver


@pytest.mark.parametrize("mode", ["plain", "starttls", "tls"])
def test_login_select_fetch_everything(
    any_server: RunningServer, test_ca: TestCA, mode: str
) -> None:
    driver = login(any_server, test_ca, mode)
    user = next(iter(any_server.users))
    done, untagged = driver.run(Select("INBOX", readonly=True))
    assert done.status == "OK"
    assert driver.conn.state is State.SELECTED
    exists = [e.count for e in untagged if isinstance(e, Exists)]
    assert exists == [any_server.seeded[user]]
    done, untagged = driver.run(
        Fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)", uid=True)
    )
    assert done.status == "OK", done
    fetched = sorted((e for e in untagged if isinstance(e, FetchResponse)), key=lambda f: f.seq)
    expected = list(seed.generate(any_server.seeded[user]))
    assert len(fetched) == len(expected)
    for response, message in zip(fetched, expected, strict=True):
        assert response.uid is not None
        assert response.size == len(message.raw)
        assert set(response.flags or ()) - {"\\Recent"} == set(message.flags)
        assert response.internaldate == message.date
        envelope = response.envelope
        assert envelope is not None
        assert envelope.subject == message.subject
        structure = response.bodystructure
        assert structure is not None
    driver.run(Logout())
    assert driver.conn.state is State.LOGOUT
    driver.close()


def test_sasl_plain_with_and_without_initial_response(
    any_server: RunningServer, test_ca: TestCA
) -> None:
    user = next(iter(any_server.users))
    mechanism = Mechanism("PLAIN", user, any_server.users[user])
    driver = Driver(any_server.host, any_server.tls_port, test_ca.client_context())
    driver.run(CapabilityCommand())
    sasl_ir = "SASL-IR" in driver.conn.capabilities
    done, _ = driver.login_sasl(mechanism)
    assert done.status == "OK", done
    driver.close()
    # Without SASL-IR: the initial response goes after the server's "+".
    driver = Driver(any_server.host, any_server.tls_port, test_ca.client_context())
    driver.conn.capabilities = driver.conn.capabilities - {"SASL-IR"}
    done, _ = driver.login_sasl(mechanism)
    assert done.status == "OK", (done, sasl_ir)
    log = b"".join(line for _, line in driver.log)
    assert any_server.users[user].encode() not in log
    assert b"<redacted>" in log
    driver.close()


def test_sasl_login_mechanism_and_wrong_password(dovecot: RunningServer, test_ca: TestCA) -> None:
    driver = Driver(dovecot.host, dovecot.tls_port, test_ca.client_context())
    done, _ = driver.login_sasl(Mechanism("LOGIN", "alice", dovecot.users["alice"]))
    assert done.status == "OK"
    driver.close()
    driver = Driver(dovecot.host, dovecot.tls_port, test_ca.client_context())
    done, _ = driver.login_sasl(Mechanism("PLAIN", "alice", "wrong"))
    assert done.status == "NO"
    assert done.code is not None
    assert done.code.name == "AUTHENTICATIONFAILED"
    assert driver.conn.state is State.NOT_AUTHENTICATED
    driver.close()


def test_starttls_forgets_capabilities_and_redacts_login(
    any_server: RunningServer, test_ca: TestCA
) -> None:
    driver = Driver(any_server.host, any_server.port)
    assert "STARTTLS" in driver.conn.capabilities or driver.run(CapabilityCommand())
    assert driver.starttls(test_ca.client_context()).status == "OK"
    assert driver.conn.capabilities == frozenset()
    _, untagged = driver.run(CapabilityCommand())
    assert any(isinstance(e, Capability) for e in untagged)
    assert "STARTTLS" not in driver.conn.capabilities
    user = next(iter(any_server.users))
    driver.run(Login(user, any_server.users[user]))
    sent = [line for direction, line in driver.log if direction == "C"]
    assert any(b"LOGIN" in line and b"<redacted>" in line for line in sent)
    assert not any(any_server.users[user].encode() in line for line in sent)
    driver.close()


def test_namespace_and_list(any_server: RunningServer, test_ca: TestCA) -> None:
    driver = login(any_server, test_ca)
    done, untagged = driver.run(Namespace())
    assert done.status == "OK"
    (namespace,) = [e for e in untagged if isinstance(e, NamespaceResponse)]
    assert namespace.personal
    done, untagged = driver.run(List("", "*"))
    assert done.status == "OK"
    names = {e.name for e in untagged if isinstance(e, ListResponse)}
    assert "INBOX" in names
    driver.close()


def test_non_ascii_mailbox_round_trip_and_literal_append(
    dovecot: RunningServer, test_ca: TestCA
) -> None:
    driver = login(dovecot, test_ca)
    name = "Entwürfe 日本"
    assert driver.run(Create(name))[0].status == "OK"
    _, untagged = driver.run(List("", "*"))
    assert name in {e.name for e in untagged if isinstance(e, ListResponse)}
    message = b"Subject: literal test\r\n\r\nline one\r\n"
    done, _ = driver.run(Append(name, message, ("\\Seen",)))
    assert done.status == "OK"
    driver.run(Select(name))
    _, untagged = driver.run(Fetch("1", "(BODY.PEEK[] FLAGS)"))
    (fetched,) = [e for e in untagged if isinstance(e, FetchResponse)]
    assert fetched.sections["BODY[]"] == message
    assert driver.run(Select("INBOX"))[0].status == "OK"
    assert driver.run(Delete(name))[0].status == "OK"
    driver.close()


def test_synchronizing_literal_waits_for_continuation(
    start_dovecot: object, test_ca: TestCA
) -> None:
    # Without LITERAL+ the client must wait for "+" before sending literal data.
    server = start_dovecot(capability="IMAP4rev1 IDLE")  # type: ignore[operator]
    driver = Driver(server.host, server.port)
    driver.run(Login("alice", server.users["alice"]))
    driver.run(CapabilityCommand())
    assert driver.conn.literal_mode == "sync"
    message = b"Subject: sync\r\n\r\nx\r\n"
    done, _ = driver.run(Append("INBOX", message))
    assert done.status == "OK"
    sent = b"".join(line for d, line in driver.log if d == "C")
    assert b"{%d}\r\n" % len(message) in sent
    driver.close()


def test_pipelined_commands_are_attributed_to_their_tags(
    dovecot: RunningServer, test_ca: TestCA
) -> None:
    driver = login(dovecot, test_ca)
    tags = [driver.conn.send(Noop()) for _ in range(5)]
    select = driver.conn.send(Select("INBOX", readonly=True))
    fetch = driver.conn.send(Fetch("1:3", "(UID)"))
    done, untagged = driver.wait(fetch)
    assert done.status == "OK"
    assert driver.conn.in_flight == ()
    assert isinstance(driver.conn.command_for(select), Select)
    assert all(isinstance(driver.conn.command_for(t), Noop) for t in tags)
    assert len([e for e in untagged if isinstance(e, FetchResponse)]) == 3
    driver.close()


def test_idle_sees_another_sessions_change(dovecot: RunningServer, test_ca: TestCA) -> None:
    watcher = login(dovecot, test_ca)
    watcher.run(Select("INBOX"))
    tag = watcher.conn.send(Idle())
    continuation = watcher.next()
    assert type(continuation).__name__ == "ContinuationRequest"
    writer = login(dovecot, test_ca)
    writer.run(Append("INBOX", b"Subject: pushed\r\n\r\nhello\r\n"))
    event = watcher.next()
    while not isinstance(event, Exists):
        event = watcher.next()
    assert event.count == dovecot.seeded["alice"] + 1
    watcher.conn.done()
    done, _ = watcher.wait(tag)
    assert done.status == "OK"
    # Leave the mailbox as the other tests expect it.
    writer.run(Select("INBOX"))
    writer.run(Store(str(event.count), ("\\Deleted",)))
    writer.run(Expunge())
    writer.close()
    watcher.close()
