"""Every line recorded from real Dovecot, Courier-IMAP and Cyrus (tests/record_transcripts.py)
parses: server lines as responses (client role), our lines as commands (server role)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from imapscope.imap import (
    Capability,
    Enabled,
    FetchResponse,
    Frame,
    Greeting,
    IdResponse,
    NamespaceResponse,
    ReceiveBuffer,
    StatusResponse,
    TaggedResponse,
    UnknownResponse,
    parse_command,
    parse_response,
)

TRANSCRIPTS = Path(__file__).parent / "fixtures" / "transcripts"
SERVERS = ["dovecot", "courier", "cyrus"]


def lines(server: str, direction: str) -> list[bytes]:
    found = []
    for row in (TRANSCRIPTS / f"{server}.txt").read_text().splitlines():
        if row.startswith(f"{direction}: "):
            found.append(ast.literal_eval(row[3:]))
    return found


def responses(server: str) -> list[object]:
    buffer = ReceiveBuffer()
    buffer.feed(b"".join(lines(server, "S")))
    events = []
    while (frame := buffer.next_frame()) is not None:
        assert isinstance(frame, Frame)
        events.append(parse_response(frame, greeting=not events))
    return events


@pytest.mark.parametrize("server", SERVERS)
def test_every_server_line_parses_to_a_typed_event(server: str) -> None:
    events = responses(server)
    assert isinstance(events[0], Greeting)
    assert not [e for e in events if isinstance(e, UnknownResponse)]
    assert any(isinstance(e, Capability) for e in events)
    assert any(isinstance(e, NamespaceResponse) for e in events)
    assert any(isinstance(e, StatusResponse) for e in events)
    tagged = [e for e in events if isinstance(e, TaggedResponse)]
    assert tagged[-1].status == "OK"  # LOGOUT


@pytest.mark.parametrize("server", SERVERS)
def test_recorded_fetches_decode(server: str) -> None:
    fetches = [e for e in responses(server) if isinstance(e, FetchResponse)]
    scratch = [f for f in fetches if f.envelope and f.envelope.subject == "Grüße"]
    assert scratch, "the appended message's RFC 2047 subject decodes"
    assert scratch[0].bodystructure is not None
    assert any(f.sections.get("BODY[TEXT]") == b"hello\r\n" for f in fetches)


def test_server_specific_shapes() -> None:
    courier = next(e for e in responses("courier") if isinstance(e, NamespaceResponse))
    assert ("#shared.", ".") in courier.shared
    cyrus = responses("cyrus")
    assert Enabled(("CONDSTORE",)) in cyrus
    ids = [e for e in cyrus if isinstance(e, IdResponse)]
    assert ids[0].params is not None
    assert ids[0].params["name"] == "Cyrus IMAPD"


@pytest.mark.parametrize("server", SERVERS)
def test_our_recorded_commands_parse_on_the_server_side(server: str) -> None:
    buffer = ReceiveBuffer()
    sent = [line for line in lines(server, "C") if b"<redacted>" not in line]
    buffer.feed(b"".join(sent).replace(b"<69 bytes>", b"x" * 69).replace(b"<70 bytes>", b"x" * 70))
    count = 0
    while (frame := buffer.next_frame()) is not None:
        assert isinstance(frame, Frame)
        tag, _ = parse_command(frame)
        assert tag.startswith("A")
        count += 1
    assert count >= 20
