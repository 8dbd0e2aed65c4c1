"""Reports for people (Rich) and for monitoring systems (the Nagios plugin line)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from imapscope.probe._report import Report

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_VERDICT_STYLE = {"ok": "bold green", "warning": "bold yellow", "critical": "bold red",
                  "unknown": "bold magenta"}  # fmt: skip


def render_human(report: Report, console: Console, *, transcript: bool = False) -> None:
    target = report.target
    if target.port is not None:
        where = f"{target.host}:{target.port} ({target.security})"
    else:  # auto, and no mode worked: say what was tried
        where = f"{target.host} (auto: TLS on 993, then STARTTLS on 143)"
    if target.address and target.address != target.host:
        where += f" at {target.address}"
    console.print(Text.assemble(("imapscope check ", "bold"), where))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("ms", justify="right")
    table.add_column("detail", overflow="fold")
    for step in report.steps:
        elapsed = "" if step.status == "skip" else f"{step.elapsed_ms:.1f}"
        table.add_row(step.name, Text(step.status, _STATUS_STYLE[step.status]), elapsed,
                      step.detail)  # fmt: skip
    console.print(table)
    for alert in report.server.get("alerts", []):
        console.print(Text.assemble(("server alert: ", "bold yellow"), alert))
    console.print()
    top = report.headline
    console.print(Text(report.status.upper(), _VERDICT_STYLE[report.status]), end=" ")
    console.print(report.verdict)
    if top is not None:
        console.print(Text.assemble(("fix: ", "bold"), top.fix))
        for line in top.evidence:
            console.print(Text.assemble(("  evidence: ", "dim"), line))
    others = [f for f in report.findings if f is not top]
    if others:
        console.print()
        for found in others:
            label = (f"{found.severity:<8}", _SEVERITY_STYLE[found.severity])
            console.print(Text.assemble(label, f"{found.code} ({found.step}): {found.summary}"))
            if found.severity != "info":
                console.print(Text.assemble(("          fix: ", "dim"), found.fix))
    if report.working:
        console.print(Text.assemble(("works: ", "bold"), "; ".join(report.working)))
    timings = ", ".join(f"{name} {ms:.0f} ms" for name, ms in report.timings.items())
    console.print(Text(f"timings: {timings}", "dim"))
    if transcript:
        console.print()
        console.print(Text("transcript (secrets redacted):", "bold"))
        for line in report.transcript:
            console.print(Text(line), soft_wrap=True)


def render_nagios(report: Report) -> str:
    """``IMAP <STATUS> - <verdict> | step=12.3ms;...`` (Nagios plugin output)."""
    perfdata = " ".join(f"{name}={ms}ms" for name, ms in report.timings.items())
    return f"IMAP {report.status.upper()} - {report.verdict} | {perfdata}"
