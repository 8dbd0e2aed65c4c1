"""What a server says about a message: ENVELOPE, BODYSTRUCTURE and body sections (RFC 3501 6.4.5,
7.4.2; RFC 9051), computed from the message's own bytes.

A message is parsed once into a tree of :class:`Part`, each holding byte offsets into the stored
message, so every section is served byte for byte as stored (a delimiter line ``--foo `` keeps its
space; nothing is re-serialised). Where the RFCs leave room, Dovecot 2.3 is the model, and the
places say so.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from imapscope.imap import Address, BodyPart, BodyStructure, Envelope, Literal8, Multipart
from imapscope.sandbox import _address

if TYPE_CHECKING:
    from imapscope.sandbox._store import Message

_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(r'[^\s()<>@,;:\\"/\[\]?=]+')
_DECODED = frozenset({"7bit", "8bit", "binary"})  # the encodings that are the bytes themselves


@dataclass(eq=False, slots=True)
class Part:
    """One MIME entity: ``raw[start:body]`` is its header (blank line included), ``raw[body:end]``
    its body. ``children`` are a multipart's parts; ``inner`` is the message a message/rfc822 part
    encapsulates."""

    raw: bytes
    start: int
    body: int
    end: int
    fields: list[tuple[str, str]]  # (lower-case name, unfolded value), in order
    type: str = "text"
    subtype: str = "plain"
    params: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)
    inner: Part | None = None

    def get(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    @property
    def header(self) -> bytes:
        return self.raw[self.start : self.body]

    @property
    def text(self) -> bytes:
        return self.raw[self.body : self.end]

    @property
    def encoding(self) -> str:
        return (self.get("content-transfer-encoding") or "7bit").strip().lower()

    def sent(self) -> dt.datetime | None:
        """The Date header as a time (in its own zone; UTC when it names none); None when it
        is missing or unreadable."""
        value = self.get("date")
        try:
            when = parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError, IndexError):
            return None
        return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)

    def walk(self) -> list[Part]:
        found = [self]
        for child in self.children or ([self.inner] if self.inner else []):
            found += child.walk()
        return found


# --- parsing ----------------------------------------------------------------------------------


#: Deeper multipart or message/rfc822 nesting is treated as a leaf (Dovecot caps it too), so a
#: hostile message cannot exhaust the stack.
MAX_NESTING = 100


def parse(raw: bytes, start: int = 0, end: int | None = None,
          default: tuple[str, str] = ("text", "plain"), depth: int = 0) -> Part:  # fmt: skip
    """The entity in ``raw[start:end]``: header fields, type, and its parts, recursively."""
    end = len(raw) if end is None else end
    fields, body = _fields(raw, start, end)
    part = Part(raw, start, body, end, fields)
    part.type, part.subtype = default
    content_type = part.get("content-type")
    if content_type is not None:
        kind, params = _content_type(content_type)
        if kind is not None:  # Dovecot: an unreadable Content-Type leaves the default type
            part.type, part.subtype = kind
        part.params = params
    if depth >= MAX_NESTING:
        return part
    if part.type.lower() == "multipart" and part.params.get("boundary"):
        digest = part.subtype.lower() == "digest"  # RFC 2046 5.1.5: parts default to messages
        ranges, closed = _split_parts(raw, body, end, part.params["boundary"].encode())
        part.children = [
            parse(raw, a, b, ("message", "rfc822") if digest else ("text", "plain"), depth + 1)
            for a, b in ranges
        ]
        # Dovecot: when the close delimiter is the entity's last line, its line break is the
        # entity's too (the enclosing delimiter then has none before it to take)
        part.end = max(part.end, closed)
    elif (part.type.lower(), part.subtype.lower()) == ("message", "rfc822") and (
        part.encoding in _DECODED  # Dovecot parses an encapsulated message only if not encoded
    ):
        part.inner = parse(raw, body, end, depth=depth + 1)
        part.end = part.inner.end
    return part


def _fields(raw: bytes, start: int, end: int) -> tuple[list[tuple[str, str]], int]:
    """The header fields of the entity at ``start`` (unfolded: line breaks removed, whitespace
    kept) and where its body starts (after the blank line; ``end`` if there is none)."""
    found: list[tuple[str, list[bytes]]] = []
    pos = start
    while pos < end:
        match = _LINE_END.search(raw, pos, end)
        line_end, next_pos = (match.start(), match.end()) if match else (end, end)
        line = raw[pos:line_end]
        pos = next_pos
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if found:
                found[-1][1].append(line)
            continue
        name, colon, value = line.partition(b":")
        if colon:
            found.append((name.strip().decode("ascii", "replace").lower(), [value]))
    fields = [(name, b"".join(pieces).strip().decode("utf-8", "replace")) for name, pieces in found]
    return fields, pos


def _split_parts(
    raw: bytes, start: int, end: int, boundary: bytes
) -> tuple[list[tuple[int, int]], int]:
    """The byte ranges of a multipart body's parts (RFC 2046 5.1.1): the line break before a
    delimiter line belongs to the delimiter; the preamble and epilogue belong to no part. As
    Dovecot, a line that starts with ``--boundary`` is a delimiter whatever follows it. Also
    where the close delimiter's line ends, line break included (0 if there is none)."""
    delimiter = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while pos < end:
        match = _LINE_END.search(raw, pos, end)
        line_end, next_pos = (match.start(), match.end()) if match else (end, end)
        if raw.startswith(delimiter, pos, line_end):
            if part_start is not None:
                cut = pos
                if cut > part_start and raw[cut - 1 : cut] == b"\n":
                    cut -= 2 if raw[cut - 2 : cut] == b"\r\n" else 1
                ranges.append((part_start, max(cut, part_start)))
            if raw.startswith(delimiter + b"--", pos, line_end):
                after = _LINE_END.match(raw, line_end)
                return ranges, after.end() if after else line_end
            part_start = next_pos
        pos = next_pos
    if part_start is not None:  # no close delimiter: the last part runs to the end
        ranges.append((part_start, end))
    return ranges, 0


def _content_type(value: str) -> tuple[tuple[str, str] | None, dict[str, str]]:
    kind, _, rest = value.partition(";")
    main, slash, sub = kind.partition("/")
    main, sub = _uncomment(main).strip(), _uncomment(sub).strip()
    valid = bool(slash) and _TOKEN.fullmatch(main) and _TOKEN.fullmatch(sub)
    return ((main, sub) if valid else None), params(rest)


def _uncomment(text: str) -> str:
    return re.sub(r"\([^()]*\)", "", text)


def params(text: str) -> dict[str, str]:
    """``; name=value`` parameters (RFC 2045 5.1): quoted strings unquoted, names lower-cased.
    RFC 2231 continuations (``name*0``, ``name*1*``) are joined into one, as written; an encoded
    one keeps its ``charset'language'`` prefix and percent-encoding under ``name*``, as Dovecot
    answers them."""
    found: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, bool, str]]] = {}
    pos, text = 0, _uncomment(text)
    pattern = re.compile(r'\s*;?\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]*)', re.S)
    while True:
        match = pattern.match(text, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
        continuation = re.fullmatch(r"(.+?)\*(\d+)(\*?)", name)
        if continuation:
            base, number, encoded = continuation.groups()
            pieces.setdefault(base, []).append((int(number), bool(encoded), value))
        else:
            found.setdefault(name, value)
    for base, parts in pieces.items():
        parts.sort()
        encoded = any(flag for _, flag, _ in parts)
        joined = "".join(value for _, _, value in parts)
        found.setdefault(base + "*" if encoded else base, joined)
    return found


# --- ENVELOPE and BODYSTRUCTURE ---------------------------------------------------------------


def envelope(part: Part) -> Envelope:
    def addresses(name: str) -> tuple[Address, ...]:
        values = part.get_all(name)
        return _address.parse(", ".join(values)) if values else ()

    from_ = addresses("from")
    return Envelope(
        date=part.get("date"),
        subject=part.get("subject"),
        from_=from_,
        sender=addresses("sender") or from_,
        reply_to=addresses("reply-to") or from_,
        to=addresses("to"),
        cc=addresses("cc"),
        bcc=addresses("bcc"),
        in_reply_to=part.get("in-reply-to"),
        message_id=part.get("message-id"),
    )


def _disposition(part: Part) -> tuple[str, dict[str, str]] | None:
    value = part.get("content-disposition")
    if value is None:
        return None
    kind, _, rest = value.partition(";")
    kind = _uncomment(kind).strip()
    return (kind, params(rest)) if kind else None


def _language(part: Part) -> tuple[str, ...] | None:
    value = part.get("content-language")
    if value is None:
        return None
    languages = tuple(t for t in re.split(r"[\s,]+", _uncomment(value)) if t)
    return languages or None


def _lines(data: bytes) -> int:
    """Dovecot counts line feeds: the line break before a delimiter is the delimiter's."""
    return data.count(b"\n")


def structure(part: Part) -> BodyStructure:
    if part.children:
        return Multipart(
            subtype=part.subtype,
            parts=tuple(structure(child) for child in part.children),
            params=part.params,
            disposition=_disposition(part),
            language=_language(part),
            location=part.get("content-location"),
        )
    text = part.text
    is_text = part.type.lower() == "text"
    encoding = part.get("content-transfer-encoding")
    return BodyPart(
        type=part.type,
        subtype=part.subtype,
        # Dovecot: a text part without parameters is us-ascii (RFC 2045 5.2)
        params=part.params or ({"charset": "us-ascii"} if is_text else {}),
        id=part.get("content-id"),
        description=part.get("content-description"),
        encoding=encoding.strip() if encoding else "7bit",
        size=len(text),
        lines=_lines(text) if is_text or part.inner is not None else None,
        envelope=envelope(part.inner) if part.inner is not None else None,
        body=structure(part.inner) if part.inner is not None else None,
        md5=part.get("content-md5"),
        disposition=_disposition(part),
        language=_language(part),
        location=part.get("content-location"),
    )


# --- sections ---------------------------------------------------------------------------------


class UnknownEncodingError(ValueError):
    """BINARY of a part whose Content-Transfer-Encoding this server cannot undo (RFC 3516)."""


def find(root: Part, path: str) -> Part | None:
    """The part a section's part number names ("1", "2.3"); None if there is none. In an entity
    that is not multipart, part 1 is its body; through a message/rfc822 part the numbers go on in
    the message it encapsulates (RFC 3501 6.4.5)."""
    part = root
    for number in (int(n) for n in path.split(".")):
        if part is not root and part.inner is not None:
            part = part.inner
        if part.children:
            if not 1 <= number <= len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1:
            return None
    return part


def header_fields(header: bytes, names: set[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS (names) or HEADER.FIELDS.NOT (names) of a header block: the chosen fields as
    written (line breaks included), then the blank line (just CRLF when none is chosen). As
    Dovecot answers a header that lacks its blank line (a message of header only): FIELDS adds
    the blank line if the last field ends with a line break, FIELDS.NOT does not add it."""
    out: list[bytes] = []
    keep = False
    for line in re.findall(rb"[^\n]*\n|[^\n]+", header):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].decode("ascii", "replace").strip().upper()
        keep = (name in names) != exclude
        if keep:
            out.append(line)
    has_blank = header.endswith((b"\n\n", b"\n\r\n")) or header in (b"\r\n", b"\n")
    blank = has_blank or (not exclude and header.endswith(b"\n"))
    return b"".join(out) + (b"\r\n" if blank else b"")


SECTION = re.compile(
    r"(?:(\d+(?:\.\d+)*)(?:\.(?=[A-Z])|$))?"  # part number
    r"(HEADER\.FIELDS(?:\.NOT)? \(([^)]*)\)|HEADER|TEXT|MIME)?"  # specifier
)


def section(root: Part, text: str) -> bytes:
    """BODY[section] (RFC 3501 6.4.5): "", HEADER, TEXT, HEADER.FIELDS[.NOT] (...), or a part
    number, optionally followed by one of those or MIME. What names no part is empty (Dovecot)."""
    match = SECTION.fullmatch(text)
    if match is None:
        return b""
    path, specifier, names = match.groups()
    part = root if path is None else find(root, path)
    if part is None:
        return b""
    if specifier is None:
        return root.raw[root.start : root.end] if path is None else part.text
    if specifier == "MIME":
        # Dovecot: MIME of a part is its own header, of a message/rfc822 part too
        return part.header if path is not None else b""
    message = part if path is None else part.inner
    if message is None:  # HEADER and TEXT of a part that is not message/rfc822 (Dovecot: empty)
        return b""
    if specifier == "TEXT":
        return message.text
    if specifier == "HEADER":
        return message.header
    wanted = {n.strip('"').upper() for n in names.split()}
    return header_fields(message.header, wanted, exclude=".NOT" in specifier)


def decoded(root: Part, path: str) -> bytes:
    """BINARY[path] (RFC 3516): the part's body with its Content-Transfer-Encoding undone. The
    whole message (empty path) or a multipart is sent as stored."""
    part = root if path == "" else find(root, path)
    if part is None:
        return b""
    if path == "":
        return root.raw[root.start : root.end]
    if part.children or part.inner is not None or part.encoding in _DECODED:
        return part.text
    return Literal8(decode(part.text, part.encoding))  # Dovecot: decoded data goes as ~{N}


def decode(data: bytes, encoding: str) -> bytes:
    if encoding in _DECODED:
        return data
    if encoding == "base64":
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    if encoding == "quoted-printable":
        # RFC 2045 6.7: trailing whitespace on a line is not data; "=" ending a line (perhaps
        # followed by such whitespace) is a soft line break
        lines = _LINE_END.split(data)
        text = b"\r\n".join(line.rstrip(b" \t") for line in lines)
        return binascii.a2b_qp(text)
    raise UnknownEncodingError(encoding)


# --- the rest ---------------------------------------------------------------------------------


def preview(root: Part, limit: int = 200) -> str:
    """RFC 8970 PREVIEW: the start of the first text part, whitespace folded."""
    for part in root.walk():
        if part.type.lower() == "text" and not part.children:
            try:
                payload = decode(part.text, part.encoding)
            except UnknownEncodingError:
                payload = part.text
            charset = part.params.get("charset", "utf-8")
            try:
                text = payload.decode(charset, "replace")
            except LookupError:
                text = payload.decode("utf-8", "replace")
            if part.subtype.lower() == "html":
                text = re.sub(r"<[^>]*>", " ", text)
            return " ".join(text.split())[:limit]
    return ""


def object_id(message: Message, kind: str) -> str:
    """RFC 8474 EMAILID (from the content) or THREADID (from the thread's first Message-ID)."""
    if kind == "EMAILID":
        return "M" + hashlib.sha256(message.raw).hexdigest()[:24]
    parsed = message.parsed
    root = (str(parsed.get("references") or parsed.get("in-reply-to") or "").split() or
            [str(parsed.get("message-id") or message.uid)])[0]  # fmt: skip
    return "T" + hashlib.sha256(root.encode()).hexdigest()[:24]
