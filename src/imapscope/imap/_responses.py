"""Parsing responses (client role) and serializing them (server role).

RFC 9051 section 9::

    response        = *(continue-req / response-data) response-done
    continue-req    = "+" [SP (resp-text / base64)] CRLF
    response-data   = "*" SP (resp-cond-state / resp-cond-bye / mailbox-data / message-data /
                      capability-data / enable-data) CRLF
    response-tagged = tag SP resp-cond-state CRLF
    resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
    resp-text       = ["[" resp-text-code "]" SP] [text]
    message-data    = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att))

FETCH is the hot path: a 100,000-message sync is 100,000 FETCH lines. :func:`parse_fetch` reads
the common items (UID, FLAGS, RFC822.SIZE, INTERNALDATE, MODSEQ) with one regex each, keeps
ENVELOPE and BODYSTRUCTURE as raw spans decoded on access, and falls back to the general scanner
only for items it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from imapscope.imap import _mutf7
from imapscope.imap._buffer import Frame
from imapscope.imap._errors import RemoteProtocolError
from imapscope.imap._events import (
    Acl,
    AppendUid,
    Bye,
    Capability,
    CodeValue,
    ContinuationRequest,
    CopyUid,
    Enabled,
    ESearch,
    Exists,
    Expunge,
    Fetch,
    Flags,
    Greeting,
    GreetingStatus,
    IdResponse,
    ListResponse,
    MyRights,
    Namespace,
    NamespaceEntry,
    Quota,
    QuotaResource,
    QuotaRoot,
    Recent,
    Response,
    ResponseCode,
    Search,
    Status,
    StatusResponse,
    TaggedResponse,
    UnknownResponse,
    UntaggedStatus,
    Vanished,
)
from imapscope.imap._values import (
    BALANCED_PATTERN,
    ENVELOPE_PATTERN,
    MatchedEnvelope,
    RawValue,
    Scanner,
    Value,
    as_int,
    as_list,
    as_str,
)

# --- response codes ---------------------------------------------------------------------------

#: How each known response code's argument is typed. Codes not listed keep their text.
CODE_KINDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "ALERT",
            "PARSE",
            "READ-ONLY",
            "READ-WRITE",
            "TRYCREATE",
            "UIDNOTSTICKY",
            "CLOSED",
            "NOMODSEQ",
            "AUTHENTICATIONFAILED",
            "AUTHORIZATIONFAILED",
            "UNAVAILABLE",
            "EXPIRED",
            "PRIVACYREQUIRED",
            "CONTACTADMIN",
            "NOPERM",
            "INUSE",
            "EXPUNGEISSUED",
            "CORRUPTION",
            "SERVERBUG",
            "CLIENTBUG",
            "CANNOT",
            "LIMIT",
            "OVERQUOTA",
            "ALREADYEXISTS",
            "NONEXISTENT",
            "HASCHILDREN",
            "NOTSAVED",
            "UNKNOWN-CTE",
            "COMPRESSIONACTIVE",
            "USEATTR",
            "WEBALERT",
        ],
        "none",
    ),
    **dict.fromkeys(["CAPABILITY"], "atoms"),
    **dict.fromkeys(["PERMANENTFLAGS", "BADCHARSET"], "list"),
    **dict.fromkeys(["UIDVALIDITY", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ", "APPENDLIMIT"], "int"),
    "APPENDUID": "appenduid",
    "COPYUID": "copyuid",
    "MODIFIED": "text",
    "REFERRAL": "text",
    "MAILBOXID": "list",
}


def parse_code(text: bytes) -> ResponseCode:
    """The inside of ``[...]``."""
    name_bytes, _, arg = text.partition(b" ")
    name = name_bytes.decode("ascii", "replace").upper()
    kind = CODE_KINDS.get(name)
    value: CodeValue
    try:
        if kind == "none" or (kind is None and not arg):
            value = None
        elif kind == "atoms":
            value = tuple(arg.decode("ascii", "replace").split())
        elif kind == "list":
            items = as_list(Scanner(arg).value()) if arg.startswith(b"(") else [arg.decode()]
            value = tuple(as_str(v) or "" for v in items)
        elif kind == "int":
            value = int(arg)
        elif kind == "appenduid":
            validity, uids = arg.split()
            value = AppendUid(int(validity), uids.decode("ascii"))
        elif kind == "copyuid":
            validity, source, destination = arg.split()
            value = CopyUid(int(validity), source.decode("ascii"), destination.decode("ascii"))
        else:
            value = arg.decode("utf-8", "replace")
    except (ValueError, RemoteProtocolError) as exc:
        raise RemoteProtocolError(
            f"malformed [{name}] response code: {text!r}",
            hint="the server's response code does not follow its RFC",
        ) from exc
    return ResponseCode(name, value)


def parse_resp_text(raw: bytes) -> tuple[ResponseCode | None, str]:
    """``["[" resp-text-code "]" SP] text``."""
    if raw.startswith(b"["):
        end = raw.find(b"]")
        if end < 0:
            raise RemoteProtocolError(f"unterminated response code in {raw!r}")
        code = parse_code(raw[1:end])
        return code, raw[end + 1 :].lstrip(b" ").decode("utf-8", "replace")
    return None, raw.decode("utf-8", "replace")


# --- FETCH ------------------------------------------------------------------------------------

_ITEM_NAME = re.compile(rb"([A-Za-z0-9.\-]+)(\[[^\]\r\n]*\](?:<(\d+)>)?)? ")
# A run of the items nearly every FETCH carries, in any order, with their values: one match per
# line instead of one per item (FACTS.md: this is what reaches the server's own speed). Anything
# else goes through the item-name path. Servers send item names in upper case; other spellings
# take the slow path, which is case-insensitive.
_COMMON_RUN = re.compile(
    rb"(?:(?:UID (?P<uid>\d+)"
    rb"|FLAGS \((?P<flags>[^()\r\n]*)\)"
    rb"|RFC822\.SIZE (?P<size>\d+)"
    rb'|INTERNALDATE "(?P<date>[^"\\\r\n]*)"'
    rb"|MODSEQ \((?P<modseq>\d+)\)"
    # ENVELOPE and BODYSTRUCTURE without literals: their whole span, kept raw; an ENVELOPE in
    # its common shape with the fields its summary reads (matching that shape is also faster
    # than matching any balanced value).
    rb"|ENVELOPE (?P<envelope>" + ENVELOPE_PATTERN + rb"|" + BALANCED_PATTERN + rb")"
    rb"|BODYSTRUCTURE (?P<bodystructure>" + BALANCED_PATTERN + rb"))(?: |(?=\))))+"
)
# The items the common run reads into fields, whatever their spelling.
_COMMON_NAMES = frozenset({"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "MODSEQ"})
# Items whose value is a string (or NIL): body sections and the old RFC822 forms.
_SECTION_ITEMS = frozenset(
    {"BODY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY[]", "PREVIEW"}
)


_NO_SECTIONS: Mapping[str, bytes | bytearray | None] = MappingProxyType({})
_NO_ITEMS: Mapping[str, RawValue] = MappingProxyType({})


def parse_fetch(frame: Frame, seq: int, pos: int) -> Fetch:
    """``* seq FETCH (`` has been read; ``pos`` is just after the ``(``."""
    text = frame.text
    uid = size = modseq = None
    flags: tuple[str, ...] | None = None
    internaldate: str | None = None
    # Built only when an item needs them: most FETCH lines carry only the common items.
    scanner: Scanner | None = None
    sections: dict[str, bytes | bytearray | None] | None = None
    items: dict[str, RawValue] | None = None
    common_run = _COMMON_RUN.match
    while True:
        run = common_run(text, pos)
        if run is not None:
            # One match consumed a run of common items, in whatever order the server sent them;
            # each named group holds its item's value (an item appears once per FETCH).
            (
                uid_text,
                flag_text,
                size_text,
                date_text,
                modseq_text,
                envelope_span,
                env_date,
                env_subject,
                env_from,
                env_to,
                env_message_id,
                structure_span,
            ) = run.groups()
            if uid_text is not None:
                uid = int(uid_text)
            if flag_text is not None:
                flags = tuple(flag_text.decode("utf-8", "replace").split())
            if size_text is not None:
                size = int(size_text)
            if date_text is not None:
                internaldate = date_text.decode("ascii", "replace")
            if modseq_text is not None:
                modseq = int(modseq_text)
            if envelope_span is not None or structure_span is not None:
                # Items read before this run (by the item-name path, or by an earlier run) stay.
                if items is None:
                    items = {}
                if envelope_span is not None:
                    items["ENVELOPE"] = (
                        RawValue(envelope_span) if env_date is None
                        else MatchedEnvelope(envelope_span, (), (env_date, env_subject, env_from,
                                                                 env_to, env_message_id))
                    )  # fmt: skip
                if structure_span is not None:
                    items["BODYSTRUCTURE"] = RawValue(structure_span)
            pos = run.end()
            if text[pos - 1 : pos] == b" ":
                continue
        if text[pos : pos + 1] == b")":
            pos += 1
            break
        if scanner is None:
            scanner = Scanner(text, pos, frame.literals)
        scanner.pos = pos
        name_match = _ITEM_NAME.match(text, pos)
        if name_match is None:
            raise scanner.error("expected a FETCH item name")
        name = name_match.group(1).decode("ascii").upper()
        scanner.pos = name_match.end()
        if name_match.group(2) is not None or name in _SECTION_ITEMS:
            if name_match.group(2) is not None:
                name += name_match.group(2).decode("utf-8", "replace").upper()
            if sections is None:
                sections = {}
            sections[name] = _nstring(scanner)
        elif name in _COMMON_NAMES:  # a common item spelled otherwise (lower case): a field
            value = scanner.value()
            if name == "UID":
                uid = as_int(value)
            elif name == "FLAGS":
                flags = tuple(as_str(f) or "" for f in as_list(value))
            elif name == "RFC822.SIZE":
                size = as_int(value)
            elif name == "INTERNALDATE":
                internaldate = as_str(value)
            else:  # MODSEQ (n)
                modseq = as_int((as_list(value) or [None])[0])
        else:
            if items is None:
                items = {}
            items[name] = scanner.span()
        pos = scanner.pos
        following = text[pos : pos + 1]
        if following == b" ":
            pos += 1
        elif following != b")":
            raise Scanner(text, pos).error("expected SP or ')' after a FETCH item")
    if not text.startswith(b"\r\n", pos):
        raise Scanner(text, pos).error("expected end of line after FETCH")
    return Fetch(
        seq,
        uid,
        flags,
        size,
        internaldate,
        modseq,
        _NO_SECTIONS if sections is None else sections,
        _NO_ITEMS if items is None else items,
    )


def _nstring(scanner: Scanner) -> bytes | bytearray | None:
    value = scanner.value()
    if isinstance(value, list):
        raise scanner.error("expected a string or NIL")
    if isinstance(value, str):  # an atom where a string belongs; lenient: keep its bytes
        return value.encode()
    return value


# --- everything else --------------------------------------------------------------------------


def _strings(values: list[Value]) -> tuple[str, ...]:
    return tuple(as_str(v) or "" for v in values)


def _mailbox(value: Value, utf8: bool) -> tuple[str, bytes]:
    if value is None or isinstance(value, list):
        raise RemoteProtocolError(f"expected a mailbox name, got {value!r}")
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if utf8:
        return raw.decode("utf-8", "replace"), raw
    if raw.upper() == b"INBOX":
        return "INBOX", raw
    return _mutf7.decode(raw), raw


def _namespace_group(value: Value) -> tuple[NamespaceEntry, ...]:
    entries = []
    for entry in as_list(value):
        fields = as_list(entry)
        if len(fields) < 2:
            raise RemoteProtocolError(f"namespace entry needs prefix and delimiter: {entry!r}")
        entries.append((as_str(fields[0]) or "", as_str(fields[1])))
    return tuple(entries)


def _pairs(values: list[Value]) -> list[tuple[Value, Value]]:
    if len(values) % 2:
        raise RemoteProtocolError(f"expected name/value pairs, got {values!r}")
    return list(zip(values[::2], values[1::2], strict=True))


# The common shapes of LIST and STATUS (every folder of every account at each connect): a
# mailbox name that is an atom or a quoted string without escapes, simple attributes, numbers;
# anything else (a literal, an escape, extended data, NIL for a name) is left to the scanner.
_MAILBOX = rb'(?:([!#$&\'+-\[\]-z|}~]+)|"([^"\\\r\n]*)")'  # an atom, without % * ( ) { " \
_LIST_SIMPLE = re.compile(
    rb'\((\\?[A-Za-z0-9$_-]+(?: \\?[A-Za-z0-9$_-]+)*)?\) (?:"([^"\\\r\n])"|NIL) '
    + _MAILBOX
    + rb"\r\n"
)
_STATUS_SIMPLE = re.compile(_MAILBOX + rb" \(((?:[A-Za-z0-9-]+ \d+)(?: [A-Za-z0-9-]+ \d+)*)?\)\r\n")


def _simple_name(atom: bytes | None, quoted: bytes | None) -> bytes | None:
    """The name a fast match found (None: let the scanner read it; NIL is no name)."""
    if atom is None:
        return quoted
    return None if atom.upper() == b"NIL" else atom


def _parse_list(kind: str, scanner: Scanner, utf8: bool) -> ListResponse:
    simple = _LIST_SIMPLE.fullmatch(scanner.text, scanner.pos)
    if simple is not None:
        attributes, delimiter, atom, quoted = simple.groups()
        raw = _simple_name(atom, quoted)
        if raw is not None:
            name, raw = _mailbox(raw, utf8)
            return ListResponse(
                "LIST" if kind == "LIST" else "LSUB",
                tuple(attributes.decode("ascii").split()) if attributes else (),
                None if delimiter is None else delimiter.decode("utf-8", "replace"),
                name,
                raw,
            )
    values = scanner.values_to_end()
    if len(values) < 3:
        raise RemoteProtocolError(f"{kind} needs attributes, delimiter and name: {values!r}")
    name, raw = _mailbox(values[2], utf8)
    return ListResponse(
        "LIST" if kind == "LIST" else "LSUB",
        _strings(as_list(values[0])),
        as_str(values[1]),
        name,
        raw,
        tuple(values[3:]),
    )


def _parse_status(scanner: Scanner, utf8: bool) -> StatusResponse:
    simple = _STATUS_SIMPLE.fullmatch(scanner.text, scanner.pos)
    if simple is not None:
        atom, quoted, listed = simple.groups()
        raw = _simple_name(atom, quoted)
        if raw is not None:
            name, _ = _mailbox(raw, utf8)
            words = listed.split(b" ") if listed else []
            keys = (k.decode("ascii").upper() for k in words[::2])
            return StatusResponse(name, dict(zip(keys, map(int, words[1::2]), strict=True)))
    values = scanner.values_to_end()
    if len(values) != 2:
        raise RemoteProtocolError(f"STATUS needs a mailbox and a list: {values!r}")
    name, _ = _mailbox(values[0], utf8)
    items = {(as_str(k) or "").upper(): as_int(v) for k, v in _pairs(as_list(values[1]))}
    return StatusResponse(name, items)


_NUMBERS_ONLY = re.compile(rb"[\d ]*\r\n")


def _parse_search(scanner: Scanner) -> Search:
    if _NUMBERS_ONLY.match(scanner.text, scanner.pos):
        # The common shape, and a large one (a SEARCH ALL of a big mailbox): split, not scan.
        return Search(tuple(map(int, scanner.text[scanner.pos : -2].split())))
    values = scanner.values_to_end()
    modseq = None
    if values and isinstance(values[-1], list):  # CONDSTORE: (MODSEQ n)
        tail = as_list(values.pop())
        if len(tail) == 2 and (as_str(tail[0]) or "").upper() == "MODSEQ":
            modseq = as_int(tail[1])
    return Search(tuple(as_int(v) for v in values), modseq)


def _parse_esearch(scanner: Scanner) -> ESearch:
    values = scanner.values_to_end()
    tag = None
    if values and isinstance(values[0], list):
        correlator = as_list(values.pop(0))
        if len(correlator) == 2:
            tag = as_str(correlator[1])
    uid = bool(values) and (as_str(values[0]) or "").upper() == "UID"
    if uid:
        values.pop(0)
    items: dict[str, str | int] = {}
    for key, value in _pairs(values):
        text = as_str(value) or ""
        items[(as_str(key) or "").upper()] = int(text) if text.isdigit() else text
    return ESearch(tag, uid, items)


def _parse_id(scanner: Scanner) -> IdResponse:
    value = scanner.value()
    if value is None:
        return IdResponse(None)
    params = {as_str(k) or "": as_str(v) for k, v in _pairs(as_list(value))}
    return IdResponse(params)


def _parse_quota(scanner: Scanner) -> Quota:
    values = scanner.values_to_end()
    if len(values) != 2:
        raise RemoteProtocolError(f"QUOTA needs a root and a list: {values!r}")
    triples = as_list(values[1])
    if len(triples) % 3:
        raise RemoteProtocolError(f"QUOTA resources come in threes: {triples!r}")
    resources = tuple(
        QuotaResource(
            (as_str(triples[i]) or "").upper(), as_int(triples[i + 1]), as_int(triples[i + 2])
        )
        for i in range(0, len(triples), 3)
    )
    return Quota(as_str(values[0]) or "", resources)


def _untagged_keyword(name: str, scanner: Scanner, utf8: bool) -> Response:
    if name == "CAPABILITY":
        return Capability(tuple(scanner.rest().decode("ascii", "replace").split()))
    if name == "ENABLED":
        return Enabled(tuple(scanner.rest().decode("ascii", "replace").split()))
    if name == "FLAGS":
        return Flags(_strings(as_list(scanner.value())))
    if name in ("LIST", "LSUB", "XLIST"):
        return _parse_list("LIST" if name == "XLIST" else name, scanner, utf8)
    if name == "STATUS":
        return _parse_status(scanner, utf8)
    if name == "SEARCH":
        return _parse_search(scanner)
    if name == "ESEARCH":
        return _parse_esearch(scanner)
    if name == "NAMESPACE":
        values = scanner.values_to_end()
        if len(values) != 3:
            raise RemoteProtocolError(f"NAMESPACE needs three groups: {values!r}")
        return Namespace(*(_namespace_group(v) for v in values))
    if name == "ID":
        return _parse_id(scanner)
    if name == "QUOTA":
        return _parse_quota(scanner)
    if name == "QUOTAROOT":
        values = scanner.values_to_end()
        mailbox, _ = _mailbox(values[0] if values else None, utf8)
        return QuotaRoot(mailbox, _strings(values[1:]))
    if name == "ACL":
        values = scanner.values_to_end()
        mailbox, _ = _mailbox(values[0] if values else None, utf8)
        entries = tuple((as_str(k) or "", as_str(v) or "") for k, v in _pairs(values[1:]))
        return Acl(mailbox, entries)
    if name == "MYRIGHTS":
        values = scanner.values_to_end()
        if len(values) != 2:
            raise RemoteProtocolError(f"MYRIGHTS needs a mailbox and rights: {values!r}")
        mailbox, _ = _mailbox(values[0], utf8)
        return MyRights(mailbox, as_str(values[1]) or "")
    if name == "VANISHED":
        earlier = scanner.text.startswith(b"(EARLIER) ", scanner.pos)
        if earlier:
            scanner.pos += len(b"(EARLIER) ")
        return Vanished(scanner.rest().decode("ascii", "replace"), earlier)
    return UnknownResponse(name, scanner.rest())


_STATUS_WORDS: dict[bytes, Status] = {b"OK": "OK", b"NO": "NO", b"BAD": "BAD"}
_GREETING_WORDS: dict[bytes, GreetingStatus] = {b"OK": "OK", b"PREAUTH": "PREAUTH", b"BYE": "BYE"}
_NUMBERED = re.compile(rb"\* (\d+) ([A-Za-z]+)")


def parse_response(frame: Frame, *, utf8: bool = False, greeting: bool = False) -> Response:
    """One server response (client role). ``greeting`` parses the first line of a connection."""
    text = frame.text
    if not text.endswith(b"\r\n"):
        raise RemoteProtocolError(f"response without CRLF: {text[:80]!r}")
    if text.startswith(b"* "):
        numbered = _NUMBERED.match(text)
        if numbered is not None:
            keyword = numbered.group(2).upper()
            if keyword == b"FETCH":
                after = numbered.end()
                if text[after : after + 2] != b" (":
                    raise RemoteProtocolError(f"malformed FETCH: {text[:80]!r}")
                return parse_fetch(frame, int(numbered.group(1)), after + 2)
            number = int(numbered.group(1))
            if keyword == b"EXISTS":
                return Exists(number)
            if keyword == b"RECENT":
                return Recent(number)
            if keyword == b"EXPUNGE":
                return Expunge(number)
            return UnknownResponse(keyword.decode("ascii"), text[2:-2])
        word, _, rest = text[2:-2].partition(b" ")
        upper = word.upper()
        if greeting:
            if upper in (b"OK", b"PREAUTH", b"BYE"):
                code, said = parse_resp_text(rest)
                return Greeting(_GREETING_WORDS[upper], code, said)
            raise RemoteProtocolError(
                f"greeting is not OK, PREAUTH or BYE: {text[:80]!r}",
                hint="is this port really IMAP? (a POP3 or SMTP banner looks like this)",
            )
        if upper in _STATUS_WORDS:
            code, said = parse_resp_text(rest)
            return UntaggedStatus(_STATUS_WORDS[upper], code, said)
        if upper == b"BYE":
            code, said = parse_resp_text(rest)
            return Bye(code, said)
        start = 2 + len(word)
        if text[start : start + 1] == b" ":
            start += 1
        scanner = Scanner(text, start, frame.literals)
        return _untagged_keyword(word.decode("ascii", "replace").upper(), scanner, utf8)
    if greeting:
        raise RemoteProtocolError(
            f"expected an untagged greeting, got {text[:80]!r}",
            hint="is this port really IMAP? A TLS port read without TLS looks like this too",
        )
    if text.startswith(b"+"):
        return ContinuationRequest(text[2:-2].decode("utf-8", "replace") if len(text) > 3 else "")
    tag, _, rest = text[:-2].partition(b" ")
    word, _, rest = rest.partition(b" ")
    status = _STATUS_WORDS.get(word.upper())
    if not tag or status is None:
        raise RemoteProtocolError(f"not an IMAP response: {text[:80]!r}")
    code, said = parse_resp_text(rest)
    return TaggedResponse(tag.decode("ascii", "replace"), status, code, said)
