"""Properties of the codec, checked with hypothesis."""

from __future__ import annotations

import contextlib
import datetime as dt
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapscope.imap import (
    NEED_DATA,
    Address,
    ClientConnection,
    Envelope,
    FetchResponse,
    Frame,
    Login,
    ProtocolError,
    ReceiveBuffer,
    compact_sequence,
    decode_mailbox,
    decode_words,
    encode,
    encode_mailbox,
    parse_response,
    raw_envelope,
    split_sequence,
)
from imapscope.imap._errors import RemoteProtocolError
from imapscope.imap._events import parse_internaldate
from imapscope.imap._sequence import expand
from imapscope.imap._structure import _ENVELOPE, _inlined, envelope_summary, envelope_summary_of
from imapscope.imap._values import MatchedEnvelope, RawValue, Scanner
from tests.imap_driver import received

RECORDED = [
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+] ready.\r\n",
    b'* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 1331 INTERNALDATE "01-Jan-2024 09:02:00 +0000" '
    b'ENVELOPE ("Mon, 01 Jan 2024" "Lunch" (("=?utf-8?b?Sm9zw6k=?=" NIL "jose" "example.test")) '
    b'NIL NIL NIL NIL NIL NIL "<1@x>") BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL '
    b'"8bit" 987 7 NIL NIL NIL))\r\n',
    b'* NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))\r\n',
    b'* LIST (\\HasNoChildren) "." "INBOX.Projects"\r\n',
    b"* 2 FETCH (BODY[] {5}\r\nhello)\r\n",
    b"A0003 OK [APPENDUID 1700000000 12] Append completed.\r\n",
    b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4)\r\n",
    b"+ \r\n",
]


def drive(data: bytes, chunk: int) -> None:
    conn = ClientConnection(max_line=4096, max_literal=4096)
    for start in range(0, len(data), chunk):
        conn.receive_data(data[start : start + chunk])
        while conn.next_event() is not NEED_DATA:
            pass
    conn.receive_data(b"")
    while conn.next_event() is not NEED_DATA:
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_random_bytes_only_raise_protocol_errors(data: bytes, chunk: int) -> None:
    with contextlib.suppress(ProtocolError):
        drive(data, chunk)


@settings(max_examples=400)
@given(
    st.sampled_from(RECORDED),
    st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=3)), max_size=4),
)
def test_mutated_responses_only_raise_protocol_errors(
    line: bytes, mutations: list[tuple[int, bytes]]
) -> None:
    data = bytearray(line)
    for offset, replacement in mutations:
        position = offset % (len(data) + 1)
        data[position : position + len(replacement)] = replacement
    with contextlib.suppress(ProtocolError):
        parsed = parse_response(Frame(bytes(data)))
        if isinstance(parsed, FetchResponse):  # what is decoded on access, too
            for read in (parsed.envelope_summary, lambda: parsed.envelope,
                         lambda: parsed.bodystructure, lambda: parsed.internaldate):  # fmt: skip
                with contextlib.suppress(ProtocolError):
                    read()
    with contextlib.suppress(ProtocolError):
        drive(b"* OK hi\r\n" + bytes(data), 7)


def test_memory_stays_bounded_for_a_flood_without_crlf() -> None:
    tracemalloc.start()
    buffer = ReceiveBuffer(max_line=64 * 1024)
    with contextlib.suppress(ProtocolError):
        for _ in range(1000):
            buffer.feed(b"x" * 1024)
            buffer.next_frame()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


@given(st.text(max_size=40))
def test_mailbox_names_round_trip(name: str) -> None:
    encoded = encode_mailbox(name)
    assert encoded.isascii()
    assert decode_mailbox(encoded) == name


@given(st.sets(st.integers(min_value=1, max_value=5000), min_size=1, max_size=300))
def test_sequence_sets_round_trip(ids: set[int]) -> None:
    assert expand(compact_sequence(ids), 5000) == sorted(ids)
    pieces = split_sequence(ids, max_bytes=40)
    assert sorted(n for piece in pieces for n in expand(piece, 5000)) == sorted(ids)


@given(st.text(max_size=30), st.text(max_size=30))
def test_strings_round_trip_through_atom_quoted_or_literal(user: str, password: str) -> None:
    for mode in ("sync", "plus"):
        segments = encode("t", Login(user, password), literal_mode=mode)  # type: ignore[arg-type]
        buffer = ReceiveBuffer()
        buffer.feed(b"".join(s.data for s in segments))
        frame = buffer.next_frame()
        assert isinstance(frame, Frame)
        scanner = Scanner(frame.text, len(b"t LOGIN "), frame.literals)
        values = scanner.values_to_end()
        decoded = [v.encode() if isinstance(v, str) else bytes(v) for v in values]  # type: ignore[arg-type]
        assert decoded == [user.encode(), password.encode()]


# --- the ENVELOPE summary's fast path equals the general parser -------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=30,
) | st.text(  # printable ASCII: quoted strings, so the fast path (the other: mostly literals)
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30
)
_address = st.builds(
    lambda name, mailbox, host: Address(name, None, mailbox, host),
    st.none() | _text, st.none() | _text, st.none() | _text,
)  # fmt: skip
_addresses = st.lists(_address, max_size=3).map(tuple)


@given(
    st.builds(
        Envelope,
        date=st.none() | _text,
        subject=st.none() | _text,
        from_=_addresses,
        sender=_addresses,
        reply_to=_addresses,
        to=_addresses,
        cc=_addresses,
        bcc=_addresses,
        in_reply_to=st.none() | _text,
        message_id=st.none() | _text,
    )
)
def test_envelope_summary_fast_path_equals_the_general_parser(envelope: Envelope) -> None:
    raw = raw_envelope(envelope)
    expected = envelope_summary(raw.value())
    assert envelope_summary_of(raw) == expected
    # And as the FETCH parser hands it over: matched in the line (a MatchedEnvelope) or kept
    # raw with its literals.
    fetch = received(b"* 1 FETCH (UID 7 ENVELOPE " + raw.text + b")\r\n", raw.literals)
    assert isinstance(fetch, FetchResponse)
    assert fetch.uid == 7
    assert fetch.envelope_summary() == expected
    assert isinstance(fetch.items["ENVELOPE"], MatchedEnvelope) is (
        not raw.literals and _ENVELOPE.fullmatch(raw.text) is not None
    )


_DOVECOT = (
    b'("Mon, 01 Jan 2024 09:02:00 +0000" "Lunch on Friday? #0" (("=?utf-8?b?Sm9zw6kgw4FsdmFyZXo=?="'
    b' NIL "jose" "example.test")) (("=?utf-8?b?Sm9zw6kgw4FsdmFyZXo=?=" NIL "jose" "example.test"))'
    b' (("=?utf-8?b?Sm9zw6kgw4FsdmFyZXo=?=" NIL "jose" "example.test")) (("Newsletter" NIL "news"'
    b' "list.test")("Bob" NIL "bob" "example.test")) NIL NIL NIL "<1.0.414c343c@example.test>")'
)


@pytest.mark.parametrize(
    ("text", "fast"),
    [(_DOVECOT, True),
     # Escapes in every kind of field; a group marker (no host) is not a sender.
     (b'("d" "say \\"hi\\" \\\\o/" ((NIL NIL "team" NIL)("N\\"ame" NIL "a\\\\b" "x.test")) NIL'
      b' NIL (("T" NIL "t" "y.test")) NIL NIL NIL "<m\\"1@x>")', True),
     (b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)", True),
     (b'("" "" (("" NIL "" "")) NIL NIL NIL NIL NIL NIL "")', True),
     ('("d" "Café" (("José" NIL "jose" "exämple.test")) NIL NIL NIL NIL NIL NIL NIL)'.encode(),
      True),  # UTF8=ACCEPT: raw UTF-8 in quoted strings
     # What the grammar does not say, but a lenient parser takes: the general path.
     (b'("d" "s" (("A" NIL "a" "x") ("B" NIL "b" "x")) NIL NIL NIL NIL NIL NIL NIL)', False),
     (b'("d" "s" () NIL NIL () NIL NIL NIL NIL)', False),
     (b'("d" subject (("A" NIL "a" "x")) NIL NIL NIL NIL NIL NIL NIL)', False)],
)  # fmt: skip
def test_envelope_summary_fast_path_on_what_servers_send(text: bytes, fast: bool) -> None:
    """The fast path takes what it can, and says the same as the general parser; what it
    cannot take goes to the general parser (the property test above covers the rest)."""
    assert (_ENVELOPE.fullmatch(text) is not None) is fast
    assert envelope_summary_of(RawValue(text)) == envelope_summary(RawValue(text).value())


@pytest.mark.parametrize(
    ("literals", "fast"),
    [(("Re: Встреча".encode(), "José".encode()), True),  # 8-bit
     ((b'say "hi" \\o/', b"N\\ame"), True),  # what a quoted string escapes
     ((b"", b"\x00"), True),
     ((b"two\r\nlines", b"x"), False)],  # what no quoted string holds
)  # fmt: skip
def test_envelope_summary_reads_literals_as_the_quoted_strings_they_could_be(
    literals: tuple[bytes, bytes], fast: bool
) -> None:
    """Dovecot sends a subject or a name with 8-bit bytes as a literal (3% of the rig's
    messages): the fast path reads such a literal as a quoted string, and says what the
    general parser says; one holding CR or LF goes to the general parser."""
    text = (b'("d" {%d}\r\n (({%d}\r\n NIL "a" "x.test")) NIL NIL (("T" NIL "t" "y.test"))'
            b' NIL NIL NIL "<m@x>")') % tuple(len(x) for x in literals)  # fmt: skip
    raw = RawValue(text, literals)
    inlined = _inlined(raw)
    assert (inlined is not None and _ENVELOPE.fullmatch(inlined) is not None) is fast
    summary = envelope_summary_of(raw)
    assert summary == envelope_summary(raw.value())
    assert summary["subject"] == literals[0].decode("utf-8", "replace")
    assert summary["from"] == ["a@x.test"]


def test_envelope_summary_fast_path_keeps_escapes_and_groups() -> None:
    text = (b'("d" "say \\"hi\\"" ((NIL NIL "team" NIL)("N\\"ame" NIL "a\\\\b" "x.test")) NIL'
            b' NIL (("T" NIL "t" "y.test")) NIL NIL NIL "<m@x>")')  # fmt: skip
    summary = envelope_summary_of(RawValue(text))
    assert summary["subject"] == 'say "hi"'
    assert summary["from"] == ["a\\b@x.test"]
    assert summary["from_name"] == 'N"ame'
    assert summary["to"] == ["t@y.test"]


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [(b"=?utf-8?q?Caf=C3=A9?= meeting", "Café meeting"),
     (b"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),  # RFC 2047 §8: space between words
     (b"=?UTF-8?B?0J/RgNC40LLQtdGC?=", "Привет"),
     (b"=?US-ASCII?Q?Keith_Moore?=", "Keith Moore"),
     (b"a =?utf-8?q?b?= c", "a b c"),
     (b"=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="),  # unknown charset: left as it is
     # What neither decoder reads (found by fuzzing: email.header raised its own errors, which
     # broke the summary of a message and with it the folder's sync): left as it is.
     (b"=?utf-8?b?UmU6IMOcYmVRpZSDDhG5kZXJ1bmdlbiAjMjUx?=",  # base64 cut one short
      "=?utf-8?b?UmU6IMOcYmVRpZSDDhG5kZXJ1bmdlbiAjMjUx?="),
     ("=?utéf-8?b?UmU6?=".encode(), "=?utéf-8?b?UmU6?="),  # 8-bit in the charset's name
     (b"=?utf-8?b?SGVsbG8?=", "Hello")],  # missing base64 padding
)  # fmt: skip
def test_decode_words(encoded: bytes, decoded: str) -> None:
    assert decode_words(encoded) == decoded


def test_envelope_summary_keeps_the_senders_decoded_display_name() -> None:
    bob = [b"=?utf-8?q?Bob_Sm=C3=AFth?=", None, b"bob", b"example.com"]
    group = [None, None, b"team", None]  # a group marker has no host: not a sender
    value = [b"Mon, 1 Jan 2024", b"hi", [group, bob], None, None, [], None, None, None, b"<1@x>"]
    summary = envelope_summary(value)
    assert summary["from"] == ["bob@example.com"]
    assert summary["from_name"] == "Bob Smïth"
    nameless = [None, None, b"alice", b"example.com"]
    assert envelope_summary([*value[:2], [nameless], *value[3:]])["from_name"] == ""


# --- INTERNALDATE: read by position, as the general reading would --------------------------------

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@given(
    st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    st.booleans(),
)
def test_internaldate_by_position_equals_the_general_reading(
    moment: dt.datetime, minutes: int, space_padded: bool
) -> None:
    """What servers send (26 characters) is read by position; the same date with a space in
    front takes the general reading (split at the separators). Both give the same moment, in
    the same zone."""
    zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    day = f"{moment.day:2d}" if space_padded else f"{moment.day:02d}"
    text = f"{day}-{_MONTH_NAMES[moment.month - 1]}-{moment:%Y %H:%M:%S} {zone}"
    assert len(text) == 26
    read = parse_internaldate(text)
    assert read == parse_internaldate(" " + text)
    assert read.utcoffset() == parse_internaldate(" " + text).utcoffset()
    assert read.utcoffset() == dt.timedelta(minutes=minutes)
    assert read.replace(tzinfo=None) == moment.replace(microsecond=0)


@pytest.mark.parametrize(
    "text",
    ["31-Feb-2024 09:02:00 +0000", "01-Foo-2024 09:02:00 +0000", "01-Jan-2024 25:02:00 +0000",
     "01-Jan-2024 09:02:00 +2400", "01-Jan-2024 09:02:00 +00x0", "01-Jan-2024T09:02:00 +0000"],
)  # fmt: skip
def test_a_bad_internaldate_is_a_protocol_error_by_either_reading(text: str) -> None:
    for variant in (text, " " + text):
        with pytest.raises(RemoteProtocolError):
            parse_internaldate(variant)


# --- a FETCH's items, in any order, all kept -------------------------------------------------

_ENVELOPE_ITEM = b'(NIL "s" (("A" NIL "a" "x.test")) NIL NIL NIL NIL NIL NIL "<m@x>")'
_STRUCTURE_ITEM = b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 5 1)'
_FETCH_ITEMS = [
    b"UID 7", b"FLAGS (\\Seen $Label)", b"RFC822.SIZE 123",
    b'INTERNALDATE "01-Jan-2024 09:02:00 +0000"', b"MODSEQ (42)",
    b"ENVELOPE " + _ENVELOPE_ITEM, b"BODYSTRUCTURE " + _STRUCTURE_ITEM,
    b"X-GM-LABELS (\\Inbox work)", b"EMAILID (M123)", b'PREVIEW "hello"',
    b"BODY[HEADER] {5}\r\nab\r\nc",
]  # fmt: skip


@given(
    st.permutations(_FETCH_ITEMS),
    st.integers(min_value=0, max_value=len(_FETCH_ITEMS)),
    st.sets(st.sampled_from(range(len(_FETCH_ITEMS)))),
)
def test_a_fetch_keeps_every_item_in_any_order_and_spelling(
    items: list[bytes], dropped: int, lowered: set[int]
) -> None:
    """The common items are read in runs by one regular expression and the others one by one:
    whatever the order, each item is kept (an ENVELOPE read after another item once replaced
    the items read before it), and an item name in lower case means the same (RFC 9051: item
    names are case-insensitive; a lower-case UID once landed in ``items``, not in ``uid``)."""
    kept = items[: len(items) - dropped] if dropped < len(items) else items[:1]
    kept = [
        item.split(b" ", 1)[0].lower() + b" " + item.split(b" ", 1)[1] if i in lowered else item
        for i, item in enumerate(kept)
    ]
    fetch = received(b"* 3 FETCH (" + b" ".join(kept) + b")\r\n")
    assert isinstance(fetch, FetchResponse)
    names = {item.split(b" ", 1)[0].decode().upper() for item in kept}
    assert fetch.seq == 3
    assert fetch.uid == (7 if "UID" in names else None)
    assert fetch.flags == (("\\Seen", "$Label") if "FLAGS" in names else None)
    assert fetch.size == (123 if "RFC822.SIZE" in names else None)
    assert fetch.internaldate_raw == (
        "01-Jan-2024 09:02:00 +0000" if "INTERNALDATE" in names else None
    )
    assert fetch.modseq == (42 if "MODSEQ" in names else None)
    expected_items = {"ENVELOPE", "BODYSTRUCTURE", "X-GM-LABELS", "EMAILID"} & names
    assert set(fetch.items) == expected_items
    if "ENVELOPE" in names:
        assert fetch.items["ENVELOPE"].text == _ENVELOPE_ITEM
        assert fetch.envelope_summary() == {
            "date": None, "subject": "s", "from": ["a@x.test"], "from_name": "A", "to": [],
            "message_id": "<m@x>",
        }  # fmt: skip
    if "BODYSTRUCTURE" in names:
        assert fetch.items["BODYSTRUCTURE"].text == _STRUCTURE_ITEM
    if "X-GM-LABELS" in names:
        assert fetch.item("X-GM-LABELS") == ["\\Inbox", "work"]
    if "EMAILID" in names:
        assert fetch.item("EMAILID") == ["M123"]
    expected_sections = {"PREVIEW": b"hello", "BODY[HEADER]": b"ab\r\nc"}
    assert dict(fetch.sections) == {k: v for k, v in expected_sections.items() if k in names}
