"""Print docs/findings.md from the catalogue: ``python -m imapscope.probe.catalogue``."""

from imapscope.findings import LAYERS, catalogue_markdown

HEADER = f"""# Finding codes

Every problem `imapscope check` finds is named by a stable code: a public contract, safe to match
in scripts and alerts. Each finding in a report carries `code`, `severity`, `step`, `summary`,
`fix` and `evidence` (the server's own words, verbatim, where there are any).

When several findings fire, the headline is the most severe one from the lowest layer, in the
order of the ladder: {", ".join(LAYERS)}. A failure low down (a wrong port or TLS mode) often
looks like one higher up (a wrong password), so the lowest layer is the one to fix first.

Severity `error` makes the check CRITICAL (exit 2), `warning` makes it WARNING (exit 1); `info`
findings are notes. This file is generated from `src/imapscope/findings.py`.

"""


def document() -> str:
    return HEADER + catalogue_markdown() + "\n"


if __name__ == "__main__":
    print(document(), end="")
