"""Serialize then parse is the identity, for commands (client -> server) and responses
(server -> client), over generated values."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from imapscope.imap import (
    Acl,
    Address,
    Append,
    AppendUid,
    BodyPart,
    Bye,
    Capability,
    Copy,
    CopyUid,
    Create,
    Delete,
    Enabled,
    Envelope,
    ESearch,
    Exists,
    ExpungeResponse,
    Fetch,
    FetchResponse,
    Flags,
    GetQuota,
    Id,
    IdResponse,
    List,
    ListResponse,
    Login,
    Move,
    Multipart,
    MyRightsResponse,
    NamespaceResponse,
    Quota,
    QuotaResource,
    QuotaRoot,
    ReceiveBuffer,
    Recent,
    Rename,
    ResponseCode,
    Search,
    SearchResponse,
    Select,
    Sort,
    StatusResponse,
    Store,
    TaggedResponse,
    Thread,
    UnknownResponse,
    UntaggedStatus,
    Vanished,
    encode,
    encode_mailbox,
    parse_command,
    parse_response,
    raw_body,
    raw_envelope,
    serialize_response,
)

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
atoms = st.from_regex(r"[A-Za-z][A-Za-z0-9.\-]{0,10}", fullmatch=True)
flags = st.lists(
    st.sampled_from(["\\Seen", "\\Flagged", "\\Deleted", "\\Draft", "\\Answered", "$Junk"]) | atoms,
    max_size=4,
    unique=True,
).map(tuple)
numbers = st.integers(min_value=1, max_value=2**32 - 1)
sets = st.lists(numbers, min_size=1, max_size=6).map(
    lambda ns: ",".join(str(n) for n in ns)
) | st.just("1:*")
mailboxes = text.filter(lambda s: s.upper() != "INBOX") | st.just("INBOX")
dates = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))

commands = st.one_of(
    st.builds(Login, text, text),
    st.builds(Select, mailboxes, st.booleans(), st.booleans()),
    st.builds(Create, mailboxes),
    st.builds(Delete, mailboxes),
    st.builds(Rename, mailboxes, mailboxes),
    st.builds(List, st.just(""), st.sampled_from(["*", "%", "INBOX.*"]), lsub=st.booleans()),
    st.builds(Append, mailboxes, st.binary(min_size=1, max_size=200), flags, st.none() | dates),
    st.builds(  # MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469)
        lambda name, more, parts: Append(name, b"", (), None, parts, tuple(
            Append(name, message, f, d) for message, f, d in more)),
        mailboxes,
        st.lists(st.tuples(st.binary(min_size=1, max_size=50), flags, st.none() | dates),
                 max_size=3),
        st.lists(st.tuples(st.just("TEXT"), st.binary(min_size=1, max_size=50))
                 | st.tuples(st.just("URL"), st.just(b"/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1")),
                 min_size=1, max_size=3).map(tuple),
    ),
    st.builds(List, st.just(""), st.sampled_from(["*", "%"]), more_patterns=st.lists(
        st.sampled_from(["INBOX", "Drafts/%", "a b"]), min_size=1, max_size=3).map(tuple)),
    st.builds(Sort, st.lists(st.sampled_from(["REVERSE", "DATE", "SUBJECT", "ARRIVAL"]),
                             min_size=1, max_size=3).map(tuple),
              st.sampled_from(["ALL", "UNSEEN", "FROM ?"]).map(lambda c: c), uid=st.booleans())
    .filter(lambda c: "?" not in c.criteria),
    st.builds(Thread, st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]),
              st.sampled_from(["ALL", "UNSEEN SINCE 1-Jan-2024"]), uid=st.booleans()),
    st.builds(Store, sets, flags.filter(bool), st.sampled_from(["+", "-", ""]), st.booleans(),
              st.booleans()),
    st.builds(Copy, sets, mailboxes, st.booleans()),
    st.builds(Move, sets, mailboxes, st.booleans()),
    st.builds(Fetch, sets, st.sampled_from(["(UID FLAGS)", "FAST", "(BODY.PEEK[HEADER])"]),
              st.booleans()),
    st.builds(lambda s: Search("FROM ? SUBJECT ?", (s, s + "x")), text),
    st.builds(Id, st.none() | st.dictionaries(printable, text, max_size=3)),
    st.builds(GetQuota, text),
)  # fmt: skip


@settings(max_examples=300)
@given(commands, st.sampled_from(["sync", "plus"]))
def test_commands_round_trip(command: object, literal_mode: str) -> None:
    wire = b"".join(s.data for s in encode("t9", command, literal_mode=literal_mode))  # type: ignore[arg-type]
    buffer = ReceiveBuffer()
    buffer.feed(wire)
    frame = buffer.next_frame()
    tag, parsed = parse_command(frame)  # type: ignore[arg-type]
    assert (tag, parsed) == ("t9", command)


codes = st.none() | st.one_of(
    st.builds(ResponseCode, st.sampled_from(["ALERT", "TRYCREATE", "UNAVAILABLE", "READ-ONLY"])),
    st.builds(ResponseCode, st.sampled_from(["UIDNEXT", "UIDVALIDITY"]), numbers),
    st.builds(ResponseCode, st.just("PERMANENTFLAGS"), flags),
    st.builds(ResponseCode, st.just("APPENDUID"), st.builds(AppendUid, numbers, sets)),
    st.builds(ResponseCode, st.just("COPYUID"), st.builds(CopyUid, numbers, sets, sets)),
)
resp_text = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    .map(str.strip)
    .filter(lambda t: not t.startswith("["))
)
addresses = st.lists(
    st.builds(Address, st.none() | text.filter(lambda t: t.strip() == t and t), st.none(),
              printable, printable),
    max_size=2,
).map(tuple)  # fmt: skip
envelopes = st.builds(
    Envelope, st.none() | printable, st.none() | text.filter(lambda t: t.strip() == t),
    addresses, addresses, addresses, addresses, addresses, addresses,
    st.none() | printable, st.none() | printable,
)  # fmt: skip
params = st.dictionaries(atoms.map(str.lower), printable, max_size=2)
parts = st.builds(
    BodyPart, st.sampled_from(["application", "image"]), atoms.map(str.lower), params,
    st.none(), st.none(), st.sampled_from(["base64", "7bit"]), st.integers(0, 10**6),
)  # fmt: skip
structures = st.one_of(
    parts,
    st.builds(
        Multipart, atoms.map(str.lower), st.lists(parts, min_size=1, max_size=3).map(tuple), params
    ),
)
fetches = st.builds(
    FetchResponse,
    numbers,
    st.none() | numbers,
    st.none() | flags,
    st.none() | st.integers(0, 10**9),
    st.none() | st.just("01-Jan-2024 09:00:00 +0000"),
    st.none() | numbers,
    st.dictionaries(st.sampled_from(["BODY[]", "BODY[HEADER]", "BINARY[1]"]),
                    st.none() | st.binary(max_size=80), max_size=2),
    st.fixed_dictionaries({}, optional={
        "ENVELOPE": envelopes.map(raw_envelope),
        "BODYSTRUCTURE": structures.map(raw_body),
    }),
)  # fmt: skip

responses = st.one_of(
    st.builds(TaggedResponse, st.from_regex(r"[A-Za-z0-9.\-]{1,8}", fullmatch=True),
              st.sampled_from(["OK", "NO", "BAD"]), codes, resp_text),
    st.builds(UntaggedStatus, st.sampled_from(["OK", "NO", "BAD"]), codes, resp_text),
    st.builds(Bye, codes, resp_text),
    st.builds(Capability, st.lists(atoms, min_size=1, max_size=4).map(tuple)),
    st.builds(Enabled, st.lists(atoms, min_size=1, max_size=3).map(tuple)),
    st.builds(Flags, flags),
    st.builds(Exists, st.integers(0, 10**9)),
    st.builds(Recent, st.integers(0, 10**9)),
    st.builds(ExpungeResponse, numbers),
    st.builds(Vanished, sets, st.booleans()),
    st.builds(SearchResponse, st.lists(numbers, max_size=6).map(tuple), st.none() | numbers),
    st.builds(StatusResponse, mailboxes, st.dictionaries(
        st.sampled_from(["MESSAGES", "UIDNEXT", "UNSEEN"]), st.integers(0, 10**6), min_size=1)),
    st.builds(
        lambda name, attrs: ListResponse(
            "LIST", attrs, "/", name, encode_mailbox(name) if name != "INBOX" else b"INBOX"
        ),
        mailboxes,
        flags,
    ),
    st.builds(NamespaceResponse,
              st.lists(st.tuples(printable, st.just("/")), max_size=2).map(tuple),
              st.lists(st.tuples(printable, st.just(".")), max_size=2).map(tuple),
              st.lists(st.tuples(printable, st.none()), max_size=1).map(tuple)),
    st.builds(
        IdResponse, st.none() | st.dictionaries(printable, st.none() | printable, max_size=3)
    ),
    st.builds(
        Quota,
        printable,
        st.lists(
            st.builds(QuotaResource, st.sampled_from(["STORAGE", "MESSAGE"]),
                      st.integers(0, 10**6), st.integers(0, 10**6)),
            min_size=1, max_size=2,
        ).map(tuple),
    ),
    st.builds(QuotaRoot, mailboxes, st.lists(printable, max_size=2).map(tuple)),
    st.builds(Acl, mailboxes, st.lists(st.tuples(printable, atoms), max_size=2).map(tuple)),
    st.builds(MyRightsResponse, mailboxes, atoms),
    st.builds(ESearch, st.none() | printable, st.booleans(),
              st.dictionaries(st.sampled_from(["MIN", "MAX", "COUNT"]), numbers, max_size=2)),
    st.builds(UnknownResponse, atoms.filter(lambda a: a.upper() not in {
        "OK", "NO", "BAD", "BYE", "CAPABILITY", "ENABLED", "FLAGS", "LIST", "LSUB", "XLIST",
        "STATUS", "SEARCH", "ESEARCH", "NAMESPACE", "ID", "QUOTA", "QUOTAROOT", "ACL",
        "MYRIGHTS", "VANISHED", "PREAUTH"}).map(str.upper), printable.map(str.encode)),
    fetches,
)  # fmt: skip


@settings(max_examples=400)
@given(responses)
@example(UntaggedStatus("OK", None, "{0}"))  # found by hypothesis: it ends like a literal
@example(UntaggedStatus("NO", None, "Mailbox doesn't exist: x{12+}"))
def test_responses_round_trip(response: object) -> None:
    wire = serialize_response(response)  # type: ignore[arg-type]
    buffer = ReceiveBuffer()
    buffer.feed(wire)
    frame = buffer.next_frame()
    assert buffer.next_frame() is None
    parsed = parse_response(frame)  # type: ignore[arg-type]
    if isinstance(response, FetchResponse):
        assert isinstance(parsed, FetchResponse)
        assert parsed.envelope == response.envelope
        assert parsed.bodystructure == response.bodystructure
        assert (parsed.seq, parsed.uid, parsed.flags, parsed.size, parsed.modseq) == (
            response.seq,
            response.uid,
            response.flags,
            response.size,
            response.modseq,
        )
        assert parsed.internaldate_raw == response.internaldate_raw
        assert dict(parsed.sections) == dict(response.sections)
    elif re.search(r"\{\d+[+-]?\}$", str(getattr(response, "text", ""))):
        # A text that would end like a literal announcement gets a trailing space on the wire
        # (else the peer waits for a literal and swallows the next line); the rest is as sent.
        assert parsed == dataclasses.replace(response, text=response.text + " ")  # type: ignore
    else:
        assert parsed == response
