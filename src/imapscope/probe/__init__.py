"""The troubleshooting ladder and the findings catalogue.

:func:`run_check` runs the ladder against a server and returns a :class:`Report`: steps, findings
(stable codes from :data:`CATALOGUE`, with severity, summary, fix and evidence), timings, TLS and
server facts, and a redacted transcript.
"""

from imapscope.findings import (
    ALL_GOOD,
    CATALOGUE,
    LAYERS,
    Finding,
    Spec,
    catalogue_markdown,
    finding,
    headline,
)
from imapscope.probe._discover import Candidate, Discovery, discover, split_address
from imapscope.probe._ladder import CheckOptions, new_report, run_check
from imapscope.probe._render import render_human, render_nagios
from imapscope.probe._report import EXIT_CODES, Report, Step, Target

__all__ = [
    "ALL_GOOD",
    "CATALOGUE",
    "EXIT_CODES",
    "LAYERS",
    "Candidate",
    "CheckOptions",
    "Discovery",
    "Finding",
    "Report",
    "Spec",
    "Step",
    "Target",
    "catalogue_markdown",
    "discover",
    "finding",
    "headline",
    "new_report",
    "render_human",
    "render_nagios",
    "run_check",
    "split_address",
]  # fmt: skip
