"""Edges of the codec: every refusal says what was wrong, and the less common shapes work."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapscope.imap import (
    Address,
    Append,
    Authenticate,
    BadCommand,
    BodyPart,
    ClientConnection,
    CommandReceived,
    ContinuationRequest,
    Create,
    Enable,
    Envelope,
    FetchResponse,
    Frame,
    Greeting,
    Id,
    Idle,
    IdleDone,
    List,
    ListResponse,
    LocalProtocolError,
    Login,
    Mechanism,
    Multipart,
    Noop,
    ReceiveBuffer,
    RemoteProtocolError,
    ResponseCode,
    SaslResponse,
    Search,
    Select,
    ServerConnection,
    State,
    Status,
    TaggedResponse,
    UnknownResponse,
    _responses,
    decode_mailbox,
    encode,
    parse_command,
    parse_response,
    raw_body,
    serialize_response,
)
from imapscope.imap._commands import atom, flag, format_internaldate, raw
from imapscope.imap._serialize import code, string, to_raw, value
from imapscope.imap._structure import body_from_value, envelope_from_value
from imapscope.imap._values import Scanner, as_int, as_list, as_str
from tests.imap_driver import drain, received


def wire(command: object, **options: object) -> bytes:
    return b"".join(s.data for s in encode("t", command, **options))  # type: ignore[arg-type]


def command_of(line: bytes, literals: tuple[bytes, ...] = ()) -> object:
    return parse_command(Frame(line, literals))[1]


# --- building commands ------------------------------------------------------------------------


def test_argument_builders_refuse_bad_input() -> None:
    with pytest.raises(LocalProtocolError, match="atom"):
        atom("two words")
    with pytest.raises(LocalProtocolError, match="flag"):
        flag("\\Seen)")
    with pytest.raises(LocalProtocolError) as caught:
        raw("zq9\r\nzq9", secret=True)
    assert "zq9" not in str(caught.value)
    assert "a secret" in str(caught.value)


def test_internaldate_formatting() -> None:
    when = datetime(2024, 3, 5, 7, 8, 9, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    assert format_internaldate(when) == "05-Mar-2024 07:08:09 -0530"
    with pytest.raises(LocalProtocolError, match="timezone"):
        format_internaldate(datetime(2024, 1, 1))


def test_search_placeholders_and_parentheses_must_balance() -> None:
    for criteria, strings in [("FROM ?", ()), ("ALL", ("x",)), ("(ALL", ()), ("ALL)", ())]:
        with pytest.raises(LocalProtocolError):
            wire(Search(criteria, strings))
    assert wire(Search("ALL", returns=("COUNT",))) == b"t SEARCH RETURN (COUNT) ALL\r\n"


def test_utf8_mailboxes_and_enable() -> None:
    assert wire(Select("Entwürfe"), utf8=True) == "t SELECT {9}\r\nEntwürfe\r\n".encode()
    assert wire(List("", "Entwürfe/*"), utf8=True).startswith(b't LIST "" ')
    assert wire(Enable(("UTF8=ACCEPT", "CONDSTORE"))) == b"t ENABLE UTF8=ACCEPT CONDSTORE\r\n"
    assert wire(Status("INBOX", ("MESSAGES",))) == b"t STATUS INBOX (MESSAGES)\r\n"


def test_literal_minus_for_small_literals() -> None:
    assert len(encode("t", Login("u", "a\r\nb"), literal_mode="minus")) == 1


# --- parsing commands (server role) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a CREATE Archive (USE (\\Archive))\r\n", Create("Archive", "\\Archive")),
        (b"a ID NIL\r\n", Id(None)),
        (b"a SELECT INBOX (QRESYNC (67890007 20050715194045000))\r\n",
         Select("INBOX", qresync=(67890007, 20050715194045000))),
        (b"a ENABLE condstore\r\n", Enable(("CONDSTORE",))),
        (b"a AUTHENTICATE plain\r\n", Authenticate("PLAIN")),
    ],
)  # fmt: skip
def test_less_common_commands_parse(line: bytes, expected: object) -> None:
    assert command_of(line) == expected


def test_store_with_a_single_flag_and_uid_expunge() -> None:
    store = command_of(b"a STORE 1 +FLAGS \\Seen\r\n")
    assert store.flags == ("\\Seen",)  # type: ignore[attr-defined]
    expunge = command_of(b"a UID EXPUNGE 3:5\r\n")
    assert expunge.uids == "3:5"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a UID LOGIN x y\r\n", "not a command"),
        (b"a FROBNICATE\r\n", "unknown command"),
        (b"a LOGIN onlyone\r\n", "expected 2 arguments"),
        (b"a STORE 1 X-GM-LABELS (foo)\r\n", "cannot change"),
        (b'a APPEND INBOX "not a literal"\r\n', "literal"),
        (b"a FETCH 1::2 FLAGS\r\n", "sequence set"),
        (b"+ LOGIN a b\r\n", "not a tagged command"),
        (b"a SEARCH\r\n", "needs criteria"),
        # Found by fuzzing: these raised ValueError or IndexError, not a protocol error.
        (b"a SELECT INBOX (QRESYNC (12))\r\n", "QRESYNC needs"),
        (b"a SELECT INBOX (QRESYNC)\r\n", "QRESYNC needs"),
        (b"a SELECT INBOX (QRESYNC (1x 2))\r\n", "expected a number"),
        (b'a ID ("name" "x" "version")\r\n', "pairs"),
        (b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE)\r\n", "CHANGEDSINCE needs"),
        (b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12x)\r\n", "expected a number"),
        (b"a STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)\r\n", "UNCHANGEDSINCE"),
        (b"a STORE 1 (UNCHANGEDSINCE 5x) +FLAGS (\\Seen)\r\n", "expected a number"),
    ],
)
def test_malformed_commands_say_why(line: bytes, reason: str) -> None:
    with pytest.raises((RemoteProtocolError, LocalProtocolError), match=reason):
        command_of(line)


# --- serializing ------------------------------------------------------------------------------


def test_serializer_values_and_codes() -> None:
    assert value(["A", b"b c", None, ["x"]]) == b'(A "b c" NIL (x))'
    assert string(b"line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert (
        code(ResponseCode("BADCHARSET", ("UTF-8", "US-ASCII"))) == b"[BADCHARSET (UTF-8 US-ASCII)]"
    )
    assert code(ResponseCode("REFERRAL", "imap://x/")) == b"[REFERRAL imap://x/]"
    assert serialize_response(UnknownResponse("XNOTE", b"")) == b"* XNOTE\r\n"
    with pytest.raises(LocalProtocolError, match="CR or LF"):
        serialize_response(TaggedResponse("a", "OK", None, "two\r\nlines"))
    with pytest.raises(LocalProtocolError, match="negative"):
        raw_body(BodyPart("text", "plain", {}, None, None, "7bit", -1))


def test_raw_value_keeps_literals_apart_and_puts_them_back() -> None:
    raw_value = to_raw(b'("a" {3}\r\nx\ry "b")')
    assert raw_value.literals == (b"x\ry",)
    assert raw_value.value() == [b"a", b"x\ry", b"b"]


def test_message_rfc822_and_body_without_extensions() -> None:
    inner = Envelope(None, "inner", (), (), (), (), (), (), None, None)
    attached = BodyPart(
        "message", "rfc822", {}, None, None, "7bit", 300, 12, inner,
        BodyPart("text", "plain", {"charset": "us-ascii"}, None, None, "7bit", 20, 2),
    )  # fmt: skip
    structure = Multipart("mixed", (attached,), {"boundary": "b"}, None, ("en",), "here")
    assert body_from_value(raw_body(structure).value()) == structure
    # BODY (no extension data): the multipart ends with its subtype.
    plain = as_list(raw_body(structure, extensions=False).value())
    assert plain[-1] == b"mixed"
    assert body_from_value(plain) == Multipart("mixed", (attached,))


def test_non_ascii_address_names_are_encoded_words() -> None:
    from imapscope.imap._serialize import envelope  # noqa: PLC0415

    env = Envelope(
        None, None, (Address("山田 太郎", None, "taro", "x.test"),), (), (), (), (), (), None, None
    )
    assert b"=?utf-8?" in envelope(env)
    assert envelope_from_value(to_raw(envelope(env)).value()) == env


# --- structure and value errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"(NIL NIL)",  # envelope with 2 fields
        b'(NIL NIL (("a" NIL "b")) NIL NIL NIL NIL NIL NIL NIL)',  # address with 3 fields
    ],
)
def test_envelope_errors(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        envelope_from_value(Scanner(bad).value())


@pytest.mark.parametrize(
    "bad",
    [
        b"()",
        b'("text" "plain")',
        b'(("text" "plain" NIL NIL NIL "7bit" 1 1))',
        b'("text" "plain" ("odd") NIL NIL "7bit" 1 1)',
    ],
)
def test_body_structure_errors(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        body_from_value(Scanner(bad).value())


def test_language_and_disposition_shapes() -> None:
    part = body_from_value(
        Scanner(b'("text" "plain" NIL NIL NIL "7bit" 1 1 NIL () "en" NIL)').value()
    )
    assert part.disposition is None  # type: ignore[union-attr]
    assert part.language == ("en",)  # type: ignore[union-attr]


def test_value_helpers_refuse_wrong_shapes() -> None:
    for call in (lambda: as_int("x"), lambda: as_list("x"), lambda: as_str(["x"])):
        with pytest.raises(RemoteProtocolError):
            call()
    for text in (b")", b"{3}\r\n", b"(a b", b"a b)"):
        with pytest.raises(RemoteProtocolError):
            Scanner(text + b"\r\n").values_to_end()


def test_modified_utf7_errors() -> None:
    for bad in (b"&AGE", b"&!!!-", b"&2D3-"):
        with pytest.raises(RemoteProtocolError, match="UTF-7"):
            decode_mailbox(bad)


# --- SASL -------------------------------------------------------------------------------------


def test_oauth_mechanisms_and_their_failure_replies() -> None:
    exchange = Mechanism("XOAUTH2", "u@x", "tok").exchange()
    next(exchange)
    assert exchange.send(b'{"status":"401"}') == b""
    exchange = Mechanism("OAUTHBEARER", "u@x", "tok", host="imap.x", port=993).exchange()
    first = next(exchange)
    assert first == b"n,a=u@x,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"
    assert exchange.send(b'{"status":"invalid_token"}') == b"\x01"


# --- the client connection --------------------------------------------------------------------


def test_client_refusals() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    with pytest.raises(LocalProtocolError, match="authenticate"):
        conn.send(Authenticate("PLAIN"))
    with pytest.raises(LocalProtocolError, match="not allowed"):
        conn.authenticate(Mechanism("PLAIN", "u", "p"))
    with pytest.raises(LocalProtocolError, match="IDLE"):
        conn.done()
    with pytest.raises(LocalProtocolError, match="STARTTLS"):
        conn.tls_established()


def test_greeting_bye_ends_the_connection() -> None:
    conn = ClientConnection()
    events = drain(conn, b"* BYE [UNAVAILABLE] maintenance\r\n")
    assert events == [Greeting("BYE", ResponseCode("UNAVAILABLE"), "maintenance")]
    assert conn.state is State.LOGOUT


def test_enable_utf8_switches_mailbox_names_to_utf8() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    conn.send(Enable(("UTF8=ACCEPT",)))
    drain(conn, b"* ENABLED UTF8=ACCEPT\r\nA0001 OK enabled\r\n")
    assert conn.utf8
    events = drain(conn, '* LIST () "/" "Entwürfe"\r\n'.encode())
    assert isinstance(events[0], ListResponse)
    assert events[0].name == "Entwürfe"


def test_capabilities_reset_after_login_unless_sent_with_it() -> None:
    conn = ClientConnection()
    drain(conn, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    conn.send(Login("u", "p"))
    drain(conn, b"A0001 OK [CAPABILITY IMAP4rev1 IDLE MOVE] in\r\n")
    assert conn.capabilities == {"IMAP4REV1", "IDLE", "MOVE"}
    conn = ClientConnection()
    drain(conn, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    conn.send(Login("u", "p"))
    drain(conn, b"A0001 OK in\r\n")
    assert conn.capabilities == frozenset()


def test_sasl_exchange_that_runs_out_is_cancelled() -> None:
    lines = []
    conn = ClientConnection(log=lambda d, line: lines.append((d, line)))
    drain(conn, b"* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n")
    conn.authenticate(Mechanism("PLAIN", "u", "secret"))
    conn.data_to_send()
    drain(conn, b"+ \r\n")  # PLAIN has nothing more to say: cancel
    assert conn.data_to_send() == b"*\r\n"
    assert all(b"secret" not in line for _, line in lines)
    assert all(base64.b64encode(b"\0u\0secret") not in line for _, line in lines)


def test_long_received_lines_are_shortened_in_the_log() -> None:
    lines: list[tuple[str, bytes]] = []
    conn = ClientConnection(log=lambda d, line: lines.append((d, line)))
    drain(
        conn, b"* PREAUTH hi\r\n* SEARCH " + b" ".join(b"%d" % n for n in range(1, 3000)) + b"\r\n"
    )
    assert len(lines[-1][1]) < 300
    assert b"bytes>" in lines[-1][1]


# --- the server connection --------------------------------------------------------------------


def test_server_sasl_and_idle_refusals() -> None:
    conn = ServerConnection()
    (received,) = drain(conn, b"a AUTHENTICATE PLAIN\r\n")
    assert isinstance(received, CommandReceived)
    conn.send(ContinuationRequest(""))
    assert drain(conn, b"!!!\r\n") == [BadCommand("a", "SASL response is not base64")]
    assert drain(conn, b"*\r\n") == [SaslResponse("a", None)]
    conn.send(TaggedResponse("a", "BAD", None, "cancelled"))
    conn.preauthenticate()
    (idle,) = drain(conn, b"b IDLE\r\n")
    assert isinstance(idle, CommandReceived)
    assert isinstance(idle.command, Idle)
    assert drain(conn, b"c NOOP\r\n") == [BadCommand("b", "expected DONE to end IDLE")]
    assert drain(conn, b"done\r\n") == [IdleDone("b")]


def test_server_select_failure_and_data_before_tls() -> None:
    conn = ServerConnection()
    conn.preauthenticate()
    drain(conn, b"a SELECT nope\r\n")
    conn.send(TaggedResponse("a", "NO", ResponseCode("NONEXISTENT"), "no"))
    assert conn.state is State.AUTHENTICATED
    conn = ServerConnection()
    drain(conn, b"s STARTTLS\r\n")
    conn.send(TaggedResponse("s", "OK", None, "go"))
    with pytest.raises(LocalProtocolError, match="TLS"):
        conn.receive_data(b"x LOGIN a b\r\n")


def test_server_enable_utf8_and_literal_continuation() -> None:
    conn = ServerConnection()
    conn.preauthenticate()
    drain(conn, b"e ENABLE UTF8=ACCEPT\r\n")
    conn.send(TaggedResponse("e", "OK", None, "enabled"))
    assert conn.utf8
    events = drain(conn, b"a APPEND INBOX {5}\r\n")
    assert events == []
    assert conn.data_to_send() == b"e OK enabled\r\n+ Ready for literal data\r\n"
    (append,) = drain(conn, b"hello\r\n")
    assert append == CommandReceived("a", Append("INBOX", b"hello"))


def test_receive_buffer_big_literal_arriving_in_one_feed() -> None:
    buffer = ReceiveBuffer(stream_threshold=10)
    buffer.feed(b"* 1 FETCH (BODY[] {20}\r\n")
    assert buffer.next_frame() is None
    buffer.feed(b"0123456789" * 2 + b")\r\n")
    frame = buffer.next_frame()
    assert isinstance(frame, Frame)
    assert frame.literals == (bytearray(b"0123456789" * 2),)
    assert parse_response(frame).sections["BODY[]"] == b"0123456789" * 2  # type: ignore[union-attr]


def test_noop_round_trip_is_boring() -> None:
    assert command_of(wire(Noop())) == Noop()
    assert Frame(b"x").literals == ()
    assert str(RemoteProtocolError("m", hint="h")) == "m (hint: h)"


# --- LIST and STATUS: the fast path for their common shapes reads what the scanner reads ----

_NAME_BYTES = st.sampled_from(
    [b"INBOX", b"inbox", b"NIL", b"Sent", b"A/B", b"a]b", b"~x", b"&AOk-t&AOk-", b"x%", b"x*",
     b"x{", b"x(", b"x\\y", b'x"y', b"sp ace", b"", b"\xc3\xa9t\xc3\xa9", b"#news.misc"]
)  # fmt: skip


def _name_forms(raw: bytes) -> st.SearchStrategy[bytes]:
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return st.sampled_from(
        [raw, b'"' + raw + b'"', b'"' + escaped + b'"', b"{%d}\r\n" % len(raw) + raw]
    )


_LIST_LINES = st.builds(
    lambda attrs, delimiter, name, tail: b"* LIST (" + attrs + b") " + delimiter + b" " + name
    + tail + b"\r\n",
    st.sampled_from([b"", b"\\HasNoChildren", b"\\Noselect \\HasChildren", b"\\Sent $X", b"(x)",
                     b"\\HasNoChildren\\Marked", b'"q"']),
    st.sampled_from([b'"/"', b'"."', b"NIL", b'"\\\\"', b'""', b'"//"', b"/"]),
    _NAME_BYTES.flatmap(_name_forms),
    st.sampled_from([b"", b" (CHILDINFO (SUBSCRIBED))", b" ", b")"]),
)  # fmt: skip
_STATUS_LINES = st.builds(
    lambda name, items: b"* STATUS " + name + b" (" + items + b")\r\n",
    _NAME_BYTES.flatmap(_name_forms),
    st.sampled_from([b"MESSAGES 3 UIDNEXT 4", b"", b"messages 0", b"UIDVALIDITY 17 UNSEEN",
                     b"X-1 2", b"MESSAGES -1", b"MESSAGES 3  UIDNEXT 4", b"MESSAGES 1 2 3",
                     b"HIGHESTMODSEQ 18446744073709551615", b"MESSAGES x"]),
)  # fmt: skip


def _frames(line: bytes) -> Frame:
    """The line as the receive buffer frames it (a literal taken out of the text)."""
    buffer = ReceiveBuffer()
    buffer.feed(line)
    frame = buffer.next_frame()
    assert isinstance(frame, Frame)
    return frame


def _parsed(line: bytes, utf8: bool) -> object:
    try:
        return parse_response(_frames(line), utf8=utf8)
    except RemoteProtocolError as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(line=_LIST_LINES | _STATUS_LINES, utf8=st.booleans())
def test_list_and_status_fast_path_reads_what_the_scanner_reads(line: bytes, utf8: bool) -> None:
    """The same answer, or the same error, with the fast path and without it."""
    fast = _parsed(line, utf8)
    never = re.compile(rb"(?!)")
    saved = _responses._LIST_SIMPLE, _responses._STATUS_SIMPLE
    _responses._LIST_SIMPLE = _responses._STATUS_SIMPLE = never
    try:
        slow = _parsed(line, utf8)
    finally:
        _responses._LIST_SIMPLE, _responses._STATUS_SIMPLE = saved
    assert fast == slow


def test_list_and_status_fast_path_takes_the_common_shapes() -> None:
    """(Else the test above would compare the scanner with itself.)"""
    assert _responses._LIST_SIMPLE.fullmatch(b'* LIST (\\HasNoChildren) "/" INBOX\r\n', 7)
    assert _responses._LIST_SIMPLE.fullmatch(b'* LIST () NIL "Sent Items"\r\n', 7)
    assert _responses._STATUS_SIMPLE.fullmatch(b"* STATUS Drafts (MESSAGES 0 UIDNEXT 1)\r\n", 9)


def test_a_value_with_literals_is_skipped_whole_and_keeps_its_own() -> None:
    """An ENVELOPE with two literals, then a BODYSTRUCTURE with one and a body section with
    one: each raw value gets its own literals, the section the last one (the skip that takes a
    value with literals in one match counts them by their markers)."""
    literals = [b"Gr\xc3\xbc\xc3\x9fe", b'N"a\\me', b"x\xc3\xa9", b"body"]
    line = (
        b'* 1 FETCH (UID 5 ENVELOPE ("d" {%d}\r\n (({%d}\r\n NIL "a" "x.test")) NIL NIL NIL NIL NIL'
        b' NIL NIL) BODYSTRUCTURE ("text" "plain" ("name" {%d}\r\n) NIL NIL "7bit" 4 1)'
        b" BODY[TEXT] {%d}\r\n)\r\n"
    ) % tuple(len(x) for x in literals)
    fetch = received(line, literals)
    assert isinstance(fetch, FetchResponse)
    assert fetch.items["ENVELOPE"].literals == tuple(literals[:2])
    assert fetch.envelope is not None
    assert fetch.envelope.subject == "Grüße"
    assert fetch.envelope.from_[0].name == 'N"a\\me'
    assert fetch.items["BODYSTRUCTURE"].literals == (literals[2],)
    assert fetch.bodystructure is not None
    assert fetch.bodystructure.params == {"name": "xé"}
    assert fetch.sections["BODY[TEXT]"] == b"body"
    assert fetch.envelope_summary() == {
        "date": "d", "subject": "Grüße", "from": ["a@x.test"], "from_name": 'N"a\\me', "to": [],
        "message_id": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("line", "tag", "said"),
    [(b"a FETCH 1:x FLAGS\r\n", "a", "not a sequence set"),  # a command's own check refused it
     (b"a COPY 1:: Archive\r\n", "a", "not a sequence set"),
     (b"a FE\rTCH 1 FLAGS\r\n", "a", "FE?TCH"),  # the peer's CR, not sent back raw
     (b"a(b NOOP\r\n", "*", "not a tagged command"),  # no response could carry that tag
     (b'a"b NOOP\r\n', "*", "not a tagged command"),
     (b"\xc3\xa9 NOOP\r\n", "*", "not a tagged command")],
)  # fmt: skip
def test_a_refused_command_is_answered_with_a_tag_and_text_a_response_can_carry(
    line: bytes, tag: str, said: str
) -> None:
    """Found by fuzzing the sandbox: a command's own (client-side) check escaped the server
    codec as LocalProtocolError, a tag no response can carry was taken, and a refusal's text
    carried the peer's bare CR; each ended the sandbox's session unanswered."""
    events = drain(ServerConnection(), line)
    assert len(events) == 1
    refused = events[0]
    assert isinstance(refused, BadCommand)
    assert refused.tag == tag
    assert said in refused.message
    assert not any(ord(c) < 32 for c in refused.message)
    response = TaggedResponse(tag, "BAD", None, refused.message) if tag != "*" else None
    if response is not None:
        serialize_response(response)  # sendable
