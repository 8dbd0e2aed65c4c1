"""SORT and THREAD (RFC 5256): sort keys, the base subject, and the ORDEREDSUBJECT and
REFERENCES threading algorithms, over (sequence number, message) pairs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imapscope.imap import decode_words
from imapscope.sandbox._address import parse as parse_addresses
from imapscope.sandbox._store import Message

Numbered = tuple[int, Message]  # (sequence number or UID to answer with, message)
SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


class SortError(ValueError):
    """An unknown sort key or threading algorithm; the message says which."""


# --- keys -------------------------------------------------------------------------------------

_TRAILER = re.compile(r"(?:\s|\(fwd\))+$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\]\s*"
_LEADER = re.compile(r"^(?:\s*(?:" + _BLOB + r")*(?:re|fwd?)\s*(?:" + _BLOB + r")?:\s*)", re.I)
_BLOB_LEADER = re.compile(r"^\s*" + _BLOB)


def base_subject(subject: str | None) -> tuple[str, bool]:
    """RFC 5256 2.1: the subject without reply/forward markers, and whether any were removed
    (a reply or forward, which THREAD REFERENCES needs to know)."""
    text = " ".join((decode_words((subject or "").encode()) or "").split())
    marked = False
    while True:
        text, trailers = _TRAILER.subn("", text)  # step 2
        marked |= bool(trailers) and text != ""
        while True:  # steps 3 and 4 (a leader may be mere whitespace)
            text = text.lstrip()
            stripped = _LEADER.sub("", text, count=1)
            if stripped != text:
                marked, text = True, stripped
                continue
            blob = _BLOB_LEADER.sub("", text, count=1)
            if blob != text and blob:  # a leading [blob] goes unless it is all there is
                text = blob
                continue
            break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):  # step 5
            text, marked = text[5:-1], True
            continue
        return text.upper(), marked


def sent_date(message: Message) -> datetime:
    """The Date header in UTC; the arrival time when it is missing or unreadable (RFC 5256)."""
    when = message.parsed.sent()
    return (when or message.internaldate).astimezone(UTC)


def _first_address(message: Message, header: str, display: bool) -> str:
    values = message.parsed.get_all(header)
    addresses = [a for a in parse_addresses(", ".join(values)) if a.mailbox] if values else []
    if not addresses:
        return ""
    first = addresses[0]
    if display and first.name:  # RFC 5957: the display name, decoded
        return (decode_words(first.name.encode()) or "").upper()
    if display:
        return ((first.email if first.host else first.mailbox) or "").upper()
    return (first.mailbox or "").upper()


_KEYS: dict[str, Callable[[Message], Any]] = {
    "ARRIVAL": lambda m: m.internaldate,
    "DATE": sent_date,
    "SIZE": lambda m: len(m.raw),
    "SUBJECT": lambda m: base_subject(m.parsed.get("subject"))[0],
    "FROM": lambda m: _first_address(m, "from", False),
    "TO": lambda m: _first_address(m, "to", False),
    "CC": lambda m: _first_address(m, "cc", False),
    "DISPLAYFROM": lambda m: _first_address(m, "from", True),
    "DISPLAYTO": lambda m: _first_address(m, "to", True),
}


def sort(found: Sequence[Numbered], keys: Sequence[str]) -> list[int]:
    """The numbers of ``found`` in the order the keys give; ties by sequence (RFC 5256 3)."""
    order: list[Numbered] = sorted(found, key=lambda pair: pair[1].uid)
    wanted: list[tuple[str, bool]] = []
    reverse = False
    for key in keys:
        if key == "REVERSE":
            reverse = True
            continue
        if key not in SORT_KEYS:
            raise SortError(
                f"unknown sort key {key!r} (known: REVERSE, {', '.join(sorted(SORT_KEYS))})"
            )
        wanted.append((key, reverse))
        reverse = False
    if reverse or not wanted:
        raise SortError("REVERSE must come before a sort key")
    for key, descending in reversed(wanted):  # stable sorts, least significant key first
        order.sort(key=lambda pair: _KEYS[key](pair[1]), reverse=descending)
    return [number for number, _ in order]


# --- THREAD -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    number: int | None = None  # None: a dummy (a message referred to but not here)
    message: Message | None = None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def date(self) -> tuple[datetime, int]:
        """Sort position: the message's sent date (a dummy: its first child's), then arrival."""
        if self.message is not None:
            return sent_date(self.message), self.message.uid
        return self.children[0].date() if self.children else (datetime.min.replace(tzinfo=UTC), 0)

    def adopt(self, child: _Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def descends_from(self, other: _Node) -> bool:
        node: _Node | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


def _sort_tree(nodes: list[_Node]) -> None:
    nodes.sort(key=_Node.date)
    for node in nodes:
        _sort_tree(node.children)


def _format(node: _Node) -> str:
    """One thread as RFC 5256 writes it: a chain of single children in a row, siblings each in
    parentheses."""
    kids = node.children
    if node.number is None:
        return "".join(f"({_format(k)})" for k in kids)
    if len(kids) == 1:
        return f"{node.number} {_format(kids[0])}"
    if kids:
        return f"{node.number} " + "".join(f"({_format(k)})" for k in kids)
    return str(node.number)


def thread(found: Sequence[Numbered], algorithm: str) -> str:
    """THREAD's answer (without the ``THREAD`` word) for ``found``."""
    if algorithm == "ORDEREDSUBJECT":
        roots = _ordered_subject(found)
    elif algorithm == "REFERENCES":
        roots = _references(found)
    else:
        raise SortError(
            f"unknown threading algorithm {algorithm!r} (known: {', '.join(THREAD_ALGORITHMS)})"
        )
    return "".join(f"({_format(root)})" for root in roots)


def _ordered_subject(found: Sequence[Numbered]) -> list[_Node]:
    """RFC 5256 ORDEREDSUBJECT: messages grouped by base subject, sorted by sent date; the first
    of a group is the parent, the others its children."""
    groups: dict[str, list[_Node]] = {}
    for number, message in found:
        subject = base_subject(message.parsed.get("subject"))[0]
        groups.setdefault(subject, []).append(_Node(number, message))
    roots = []
    for members in groups.values():
        members.sort(key=_Node.date)
        first, *rest = members
        for node in rest:
            first.adopt(node)
        roots.append(first)
    roots.sort(key=_Node.date)
    return roots


_MSGID = re.compile(r"<([^<>]+)>")


def _references(found: Sequence[Numbered]) -> list[_Node]:
    """RFC 5256 REFERENCES (after Jamie Zawinski's algorithm)."""
    table: dict[str, _Node] = {}
    for number, message in found:
        parsed = message.parsed
        ids = _MSGID.findall(parsed.get("message-id") or "")
        own = ids[0] if ids and (ids[0] not in table or table[ids[0]].message is None) else None
        node = table.setdefault(own, _Node()) if own else _Node()  # duplicate or none: unique
        node.number, node.message = number, message
        if own is None:
            table[f"\0{number}"] = node
        references = _MSGID.findall(parsed.get("references") or "")
        if not references:
            references = _MSGID.findall(parsed.get("in-reply-to") or "")[:1]
        previous: _Node | None = None
        for ref in references:  # step 1B: link the references in a chain
            link = table.setdefault(ref, _Node())
            if previous is not None and link.parent is None and not previous.descends_from(link):
                previous.adopt(link)
            previous = link
        if node.parent is not None:  # step 1C: the message's parent is its last reference
            node.parent.children.remove(node)
            node.parent = None
        if previous is not None and previous is not node and not previous.descends_from(node):
            previous.adopt(node)
    roots = [node for node in table.values() if node.parent is None]
    roots = _prune(roots, at_root=True)
    _sort_tree(roots)
    return _group_by_subject(roots)


def _prune(nodes: list[_Node], *, at_root: bool) -> list[_Node]:
    """Step 4: dummies without children go; a dummy's children take its place, except a dummy at
    the root with several children (it keeps them together)."""
    kept: list[_Node] = []
    for node in nodes:
        node.children = _prune(node.children, at_root=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                for child in node.children:
                    child.parent = node.parent
                kept.extend(node.children)
                continue
        kept.append(node)
    return kept


def _subject_of(node: _Node) -> tuple[str, bool]:
    message = node.message if node.message is not None else node.children[0].message
    return base_subject(message.parsed.get("subject") if message else None)


def _group_by_subject(roots: list[_Node]) -> list[_Node]:
    """Step 5: threads whose roots have the same base subject are gathered (RFC 5256 5.A-C)."""
    table: dict[str, _Node] = {}
    for root in roots:  # 5B: the table's entry for each subject
        subject, marked = _subject_of(root)
        if not subject:
            continue
        other = table.get(subject)
        if (
            other is None
            or (other.message is not None and root.message is None)
            or (other.message is not None and _subject_of(other)[1] and not marked)
        ):
            table[subject] = root
    result: list[_Node] = []
    for root in roots:  # 5C: merge
        subject, marked = _subject_of(root)
        container = table.get(subject) if subject else None
        if container is None or container is root:
            result.append(root)
            continue
        if container.message is None and root.message is None:
            for child in list(root.children):
                container.adopt(child)
        elif container.message is None or (marked and not _subject_of(container)[1]):
            container.adopt(root)
        else:
            dummy = _Node()
            index = result.index(container) if container in result else len(result)
            if container in result:
                result[index] = dummy
            dummy.adopt(container)
            dummy.adopt(root)
            table[subject] = dummy
            if dummy not in result:
                result.append(dummy)
    _sort_tree(result)
    return result
