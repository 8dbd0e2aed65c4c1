"""The seeder: deterministic, realistic, and written to maildir the way servers read it."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from imapscope.sandbox import demo as seed


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = [m.raw for m in seed.generate(50, seed=7)]
    assert first == [m.raw for m in seed.generate(50, seed=7)]
    assert first != [m.raw for m in seed.generate(50, seed=8)]


def test_messages_parse_and_vary() -> None:
    messages = list(seed.generate(300))
    kinds, non_ascii_subjects, threaded, attachments = set(), 0, 0, 0
    for message in messages:
        parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
        assert not parsed.defects, parsed.defects
        assert parsed["Message-ID"]
        assert parsed["Date"]
        assert parsed["From"]
        assert str(parsed["Subject"]) == message.subject  # RFC 2047 round trip
        kinds.add(parsed.get_content_type())
        non_ascii_subjects += not message.subject.isascii()
        threaded += parsed["In-Reply-To"] is not None
        attachments += any(part.is_attachment() for part in parsed.walk())
        assert b"\r\n" in message.raw
        assert b"\n" not in message.raw.replace(b"\r\n", b"")
    assert kinds == {"text/plain", "multipart/alternative", "multipart/mixed"}
    assert non_ascii_subjects > 20
    assert threaded > 30
    assert attachments > 20
    flags = [m.flags for m in messages]
    assert any("\\Seen" in f for f in flags)
    assert any("\\Seen" not in f for f in flags)
    assert any("\\Flagged" in f for f in flags)


def test_maildir_files_are_lf_and_names_carry_sizes_and_flags(tmp_path: Path) -> None:
    messages = list(seed.generate(20))
    assert seed.write_maildir(tmp_path, messages) == 20
    files = sorted(
        (tmp_path / "cur").iterdir(), key=lambda p: int(p.name.split(".M")[1].split("P")[0])
    )
    assert {p.name for p in (tmp_path / "new").iterdir()} == set()
    for path, message in zip(files, messages, strict=True):
        info = path.name.split(":2,")[1]
        assert info == "".join(sorted(info))
        assert ("S" in info) == ("\\Seen" in message.flags)
        assert path.read_bytes() == message.raw.replace(b"\r\n", b"\n")
        assert f",S={path.stat().st_size},W={len(message.raw)}:" in path.name
        assert int(path.stat().st_mtime) == int(message.date.timestamp())
