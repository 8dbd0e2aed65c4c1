"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from imapscope.imap import state_diagram

ROOT = Path(__file__).parent.parent


def test_codec_doc_state_diagram_matches_the_table() -> None:
    doc = (ROOT / "docs" / "codec.md").read_text()
    assert state_diagram() in doc
