"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from imapscope.imap import state_diagram

ROOT = Path(__file__).parent.parent


def test_codec_doc_state_diagram_matches_the_table() -> None:
    doc = (ROOT / "docs" / "codec.md").read_text()
    assert state_diagram() in doc


def test_findings_doc_is_generated_from_the_catalogue() -> None:
    from imapscope.probe.catalogue import document  # noqa: PLC0415

    assert (ROOT / "docs" / "findings.md").read_text() == document(), (
        "regenerate: .venv/bin/python -m imapscope.probe.catalogue > docs/findings.md"
    )


def test_every_finding_code_is_produced_by_a_test() -> None:
    from imapscope.probe import CATALOGUE  # noqa: PLC0415

    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    untested = [code for code in CATALOGUE if f'"{code}"' not in tests]
    assert untested == []
