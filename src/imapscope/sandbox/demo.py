"""Deterministic, fast generator of realistic messages, and a maildir writer.

Messages vary the way real mailboxes do: plain text, multipart/alternative, multipart/mixed with a
base64 attachment, threads (In-Reply-To/References), non-ASCII display names and RFC 2047 encoded
subjects, and a mix of \\Seen, \\Flagged and \\Answered. The same seed always gives the same bytes.

Speed matters (benchmarks seed 100,000 messages), so messages are assembled from string templates
rather than the ``email`` package, which is an order of magnitude slower.
"""

from __future__ import annotations

import base64
import functools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

PEOPLE = [
    ("Alice Example", "alice@example.test"),
    ("Bob Builder", "bob@example.test"),
    ("José Álvarez", "jose@example.test"),
    ("Zoë Müller", "zoe@example.test"),
    ("山田 太郎", "taro@example.test"),
    ("Ольга Петрова", "olga@example.test"),
    ("Support Desk", "support@vendor.test"),
    ("Newsletter", "news@list.test"),
]
TOPICS = [
    "Quarterly report",
    "Lunch on Friday?",
    "Invoice 2024-117",
    "Réunion de projet",
    "Über die Änderungen",
    "Встреча в понедельник",
    "会議の議事録",
    "Build failed on main",
    "Your order has shipped",
    "Re: holiday schedule",
]
_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no what "
    "mailbox server folder message flag sync login certificate port timeout"
)
WORDS = _VOCABULARY.split()
BASE_DATE = datetime(2024, 1, 1, 9, 0, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SeedMessage:
    """One generated message: its bytes, IMAP flags and internal date."""

    raw: bytes
    flags: frozenset[str]
    date: datetime
    subject: str


def _address(name: str, addr: str) -> str:
    if name.isascii():
        return f'"{name}" <{addr}>'
    return f"{_encode(name)} <{addr}>"


def _subject(text: str) -> str:
    return text if text.isascii() else _encode(text)


@functools.lru_cache(maxsize=4096)
def _encode(text: str) -> str:
    # RFC 2047 encoded words; long ones are folded, and folding must use CRLF like every line.
    # Cached: the same names and subjects come back thousands of times in a big seed.
    return Header(text, "utf-8").encode(linesep="\r\n")


def _paragraphs(rng: random.Random, count: int) -> str:
    return "\r\n\r\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))).capitalize() + "."
        for _ in range(count)
    )


def generate(count: int, seed: int = 1, domain: str = "example.test") -> Iterator[SeedMessage]:
    """Yield ``count`` messages, oldest first; identical for identical arguments."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    thread_roots: list[tuple[str, str]] = []  # (message-id, subject)
    for i in range(count):
        sender = PEOPLE[rng.randrange(len(PEOPLE))]
        recipient = PEOPLE[(PEOPLE.index(sender) + 1 + rng.randrange(len(PEOPLE) - 1)) % 8]
        date = BASE_DATE + timedelta(minutes=17 * i + rng.randrange(17))
        msgid = f"<{seed}.{i}.{rng.getrandbits(32):08x}@{domain}>"
        headers = [
            f"Return-Path: <{sender[1]}>",
            f"From: {_address(*sender)}",
            f"To: {_address(*recipient)}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: {msgid}",
        ]
        if thread_roots and rng.random() < 0.3:
            parent_id, subject = thread_roots[rng.randrange(len(thread_roots))]
            subject = subject if subject.startswith("Re: ") else f"Re: {subject}"
            headers += [f"In-Reply-To: {parent_id}", f"References: {parent_id}"]
        else:
            subject = f"{TOPICS[rng.randrange(len(TOPICS))]} #{i}"
            thread_roots.append((msgid, subject))
            if len(thread_roots) > 50:
                thread_roots.pop(0)
        headers.append(f"Subject: {_subject(subject)}")
        if rng.random() < 0.2:
            headers.append(f"Cc: {_address(*PEOPLE[rng.randrange(len(PEOPLE))])}")
        headers.append("MIME-Version: 1.0")
        text = _paragraphs(rng, rng.randint(1, 4))
        shape = rng.random()
        boundary = f"=_imapscope_{seed}_{i}"
        if shape < 0.55:
            headers += [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
            ]
            body = text
        elif shape < 0.8:
            html = "<html><body><p>" + text.replace("\r\n\r\n", "</p><p>") + "</p></body></html>"
            headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            body = (
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
                f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
                f"--{boundary}--"
            )
        else:
            payload = rng.randbytes(rng.randint(200, 3000))
            encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
            filename = rng.choice(["report.pdf", "photo.jpg", "données.csv", "notes.txt"])
            disp = (
                f'attachment; filename="{filename}"'
                if filename.isascii()
                else f"attachment; filename*=utf-8''{quote(filename)}"  # RFC 2231
            )
            headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
            body = (
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Disposition: {disp}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                f"{encoded}--{boundary}--"
            )
        flags: set[str] = set()
        if rng.random() < 0.7:
            flags.add("\\Seen")
        if rng.random() < 0.1:
            flags.add("\\Flagged")
        if rng.random() < 0.1:
            flags.add("\\Answered")
        raw = ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode("utf-8")
        yield SeedMessage(raw=raw, flags=frozenset(flags), date=date, subject=subject)


# Maildir info flags (https://cr.yp.to/proto/maildir.html), kept in ASCII order as the spec asks.
_MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}


def maildir_name(index: int, message: SeedMessage) -> str:
    """A unique maildir file name carrying sizes and flags.

    ``S=`` is the file's size (LF line endings, as maildir stores them) and ``W=`` the message's
    size with CRLF, which is what RFC822.SIZE reports; Dovecot reads both from the name instead of
    opening the file.
    """
    letters = "".join(sorted(_MAILDIR_FLAGS[f] for f in message.flags if f in _MAILDIR_FLAGS))
    stamp = int(message.date.timestamp())
    lines = message.raw.count(b"\r\n")
    size = len(message.raw)
    return f"{stamp}.M{index}P1.imapscope,S={size - lines},W={size}:2,{letters}"


def make_maildir(path: Path) -> None:
    """Create an empty maildir (cur, new, tmp)."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def write_maildir(path: Path, messages: Iterator[SeedMessage] | list[SeedMessage]) -> int:
    """Write messages into ``path/cur`` with their flags and dates; return how many were written.

    Files hold LF line endings (the maildir convention; servers add the CR back). The file's
    mtime is the message date, which Dovecot and Courier report as INTERNALDATE.
    """
    make_maildir(path)
    cur = path / "cur"
    count = 0
    for index, message in enumerate(messages):
        target = cur / maildir_name(index, message)
        target.write_bytes(message.raw.replace(b"\r\n", b"\n"))
        stamp = message.date.timestamp()
        os.utime(target, (stamp, stamp))
        count += 1
    return count
