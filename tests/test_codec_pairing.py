"""A client connection paired with a server connection, no sockets: what one role writes, the
other reads. The tiny server here answers just enough to drive every mechanism both ways."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from imapscope.imap import (
    NEED_DATA,
    Address,
    Append,
    AppendUid,
    Authenticate,
    BadCommand,
    BodyPart,
    ClientConnection,
    CommandReceived,
    ContinuationRequest,
    Envelope,
    Exists,
    Fetch,
    FetchResponse,
    Flags,
    Greeting,
    Idle,
    IdleDone,
    ListResponse,
    Login,
    Mechanism,
    Multipart,
    Noop,
    ResponseCode,
    SaslResponse,
    Select,
    ServerConnection,
    StartTLS,
    State,
    TaggedResponse,
    raw_body,
    raw_envelope,
)
from imapscope.imap import List as ListCommand

ENVELOPE = Envelope(
    date="Mon, 01 Jan 2024 09:00:00 +0000",
    subject='Grüße (weekly) "quoted"',
    from_=(Address("Zoë Müller", None, "zoe", "example.test"),),
    sender=(),
    reply_to=(),
    to=(Address(None, None, "bob", "example.test"),),
    cc=(),
    bcc=(),
    in_reply_to=None,
    message_id="<1@example.test>",
)
STRUCTURE = Multipart(
    "mixed",
    (
        BodyPart("text", "plain", {"charset": "utf-8"}, None, None, "8bit", 120, 4),
        BodyPart(
            "application", "pdf", {}, None, None, "base64", 3000,
            disposition=("attachment", {"filename": "a.pdf"}),
        ),
    ),
    {"boundary": "xyz"},
)  # fmt: skip


class Pair:
    """Moves bytes between the two connections until both are quiet."""

    def __init__(self) -> None:
        self.client = ClientConnection()
        self.server = ServerConnection()
        self.client_events: list[object] = []
        self.server_events: list[object] = []

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            to_server = self.client.data_to_send()
            if to_server:
                self.server.receive_data(to_server)
                moved = True
            while (event := self.server.next_event()) is not NEED_DATA:
                self.server_events.append(event)
                moved = True
            to_client = self.server.data_to_send()
            if to_client:
                self.client.receive_data(to_client)
                moved = True
            while (event := self.client.next_event()) is not NEED_DATA:
                self.client_events.append(event)
                moved = True
            if not moved:
                return
        raise AssertionError("the pair did not settle")

    def take(self) -> CommandReceived:
        event = self.server_events.pop(0)
        assert isinstance(event, CommandReceived), event
        return event


def preauthenticated() -> Pair:
    pair = Pair()
    pair.server.preauthenticate()
    pair.server.send(Greeting("PREAUTH", None, "welcome back"))
    pair.pump()
    assert pair.client.state is pair.server.state is State.AUTHENTICATED
    pair.client_events.clear()
    return pair


def greeted() -> Pair:
    pair = Pair()
    pair.server.send(Greeting("OK", ResponseCode("CAPABILITY", ("IMAP4rev1", "SASL-IR")), "hi"))
    pair.pump()
    assert pair.client_events.pop(0) == Greeting(
        "OK", ResponseCode("CAPABILITY", ("IMAP4rev1", "SASL-IR")), "hi"
    )
    return pair


def test_login_select_fetch_round_trip() -> None:
    pair = greeted()
    pair.client.send(Login("alice", 'pa ss"word'))
    pair.pump()
    received = pair.take()
    assert received.command == Login("alice", 'pa ss"word')
    pair.server.send(TaggedResponse(received.tag, "OK", None, "welcome"))
    pair.pump()
    assert pair.client.state is pair.server.state is State.AUTHENTICATED

    pair.client.send(Select("Entwürfe"))
    pair.pump()
    received = pair.take()
    assert received.command == Select("Entwürfe")
    fetch = FetchResponse(
        seq=1,
        uid=42,
        flags=("\\Seen",),
        size=3120,
        internaldate_raw="01-Jan-2024 09:00:00 +0000",
        sections={"BODY[HEADER]": b"Subject: x\r\n\r\n"},
        items={
            "ENVELOPE": raw_envelope(ENVELOPE),
            "BODYSTRUCTURE": raw_body(STRUCTURE),
        },
    )
    for response in (
        Flags(("\\Seen", "\\Flagged")),
        Exists(1),
        fetch,
        TaggedResponse(received.tag, "OK", ResponseCode("READ-WRITE"), "done"),
    ):
        pair.server.send(response)
    pair.pump()
    got = next(e for e in pair.client_events if isinstance(e, FetchResponse))
    assert got.envelope == ENVELOPE
    assert got.bodystructure == STRUCTURE
    assert got.sections == fetch.sections
    assert got.internaldate == datetime(2024, 1, 1, 9, tzinfo=UTC)
    assert pair.client.state is pair.server.state is State.SELECTED


def test_synchronizing_literal_gets_its_continuation_from_the_server() -> None:
    pair = preauthenticated()
    message = b"Subject: hi\r\n\r\nbody\r\n"
    pair.client.send(Append("INBOX", message, ("\\Seen",)))
    pair.pump()  # client: {N}; server: "+ Ready"; client: the data
    received = pair.take()
    assert received.command == Append("INBOX", message, ("\\Seen",))
    pair.server.send(
        TaggedResponse(received.tag, "OK", ResponseCode("APPENDUID", AppendUid(7, "12")), "ok")
    )
    pair.pump()
    done = pair.client_events[-1]
    assert isinstance(done, TaggedResponse)
    assert done.code == ResponseCode("APPENDUID", AppendUid(7, "12"))


@pytest.mark.parametrize("sasl_ir", [True, False])
def test_authenticate_plain_exchange(sasl_ir: bool) -> None:
    pair = greeted()
    if not sasl_ir:
        pair.client.capabilities -= {"SASL-IR"}
    pair.client.authenticate(Mechanism("PLAIN", "alice", "s3cret"))
    pair.pump()
    received = pair.take()
    assert isinstance(received.command, Authenticate)
    if sasl_ir:
        payload = base64.b64decode(received.command.initial_response or "")
    else:
        assert received.command.initial_response is None
        pair.server.send(ContinuationRequest(""))
        pair.pump()
        response = pair.server_events.pop(0)
        assert isinstance(response, SaslResponse)
        payload = response.data or b""
    assert payload == b"\0alice\0s3cret"
    pair.server.send(TaggedResponse(received.tag, "OK", None, "ok"))
    pair.pump()
    assert pair.client.state is pair.server.state is State.AUTHENTICATED


def test_authenticate_login_mechanism_answers_each_prompt() -> None:
    pair = greeted()
    pair.client.authenticate(Mechanism("LOGIN", "alice", "s3cret"))
    pair.pump()
    received = pair.take()
    answers = []
    for prompt in (b"Username:", b"Password:"):
        pair.server.send(ContinuationRequest(base64.b64encode(prompt).decode()))
        pair.pump()
        event = pair.server_events.pop(0)
        assert isinstance(event, SaslResponse)
        answers.append(event.data)
    assert answers == [b"alice", b"s3cret"]
    pair.server.send(TaggedResponse(received.tag, "OK", None, "ok"))
    pair.pump()
    assert pair.server.state is State.AUTHENTICATED


def test_idle_done() -> None:
    pair = preauthenticated()
    pair.client.send(Idle())
    pair.pump()
    received = pair.take()
    assert isinstance(received.command, Idle)
    pair.server.send(ContinuationRequest("idling"))
    pair.server.send(Exists(5))
    pair.pump()
    assert isinstance(pair.client_events[-1], Exists)
    pair.client.done()
    pair.pump()
    assert pair.server_events.pop(0) == IdleDone(received.tag)
    pair.server.send(TaggedResponse(received.tag, "OK", None, "idle done"))
    pair.pump()
    pair.client.send(Noop())


def test_server_refuses_commands_out_of_state_and_garbage() -> None:
    pair = greeted()
    pair.server.receive_data(b"a1 SELECT INBOX\r\nnonsense\r\na2 FROB x\r\na3 LOGIN\r\n")
    events = []
    while (event := pair.server.next_event()) is not NEED_DATA:
        events.append(event)
    assert [type(e) for e in events] == [BadCommand] * 4
    assert [e.tag for e in events] == ["a1", "nonsense", "a2", "a3"]  # type: ignore[attr-defined]
    assert "not allowed" in events[0].message  # type: ignore[attr-defined]


def test_server_drops_plaintext_pipelined_after_starttls() -> None:
    pair = greeted()
    pair.server.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    received = pair.server.next_event()
    assert isinstance(received, CommandReceived)
    assert received.command == StartTLS()
    pair.server.send(TaggedResponse("a1", "OK", None, "Begin TLS"))
    # The injected LOGIN was in the same plaintext packet: it must never come out.
    pair.server.tls_established()
    assert pair.server.next_event() is NEED_DATA


def test_list_response_round_trip_with_non_ascii_names() -> None:
    pair = preauthenticated()
    pair.client.send(ListCommand("", "*", returns=("SPECIAL-USE",)))
    pair.pump()
    received = pair.take()
    assert received.command == ListCommand("", "*", returns=("SPECIAL-USE",))
    sent = ListResponse("LIST", ("\\HasNoChildren", "\\Drafts"), "/", "Entwürfe", b"Entw&APw-rfe")
    pair.server.send(sent)
    pair.server.send(TaggedResponse(received.tag, "OK", None, "done"))
    pair.pump()
    assert sent in pair.client_events


def test_fetch_command_items_survive_the_trip() -> None:
    pair = preauthenticated()
    pair.client.send(Select("INBOX"))
    pair.pump()
    pair.server.send(TaggedResponse(pair.take().tag, "OK", None, "selected"))
    pair.pump()
    command = Fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.1024>)", uid=True)
    pair.client.send(command)
    pair.pump()
    assert pair.take().command == command
