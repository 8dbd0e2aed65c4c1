"""What a check produces: steps, findings, timings, server facts; and its JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from imapscope.findings import ALL_GOOD, Finding, headline

StepStatus = Literal["pass", "warn", "fail", "skip"]
Status = Literal["ok", "warning", "critical", "unknown"]
EXIT_CODES: dict[Status, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
SCHEMA_VERSION = 1


@dataclass(slots=True)
class Step:
    name: str
    status: StepStatus = "pass"
    elapsed_ms: float = 0.0
    detail: str = ""


@dataclass(slots=True)
class Target:
    host: str
    port: int | None
    security: str
    user: str | None = None
    address: str | None = None


@dataclass(slots=True)
class Report:
    target: Target
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tls: dict[str, Any] | None = None
    server: dict[str, Any] = field(default_factory=dict)
    mailboxes: list[dict[str, Any]] = field(default_factory=list)
    namespaces: dict[str, list[dict[str, str | None]]] = field(default_factory=dict)
    selected: dict[str, Any] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    total_ms: float = 0.0
    working: list[str] = field(default_factory=list)  # combinations found to work
    discovery: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)  # the net layer's trace events

    @property
    def status(self) -> Status:
        severities = {f.severity for f in self.findings}
        if "error" in severities:
            return "critical"
        if "warning" in severities:
            return "warning"
        if not self.steps:
            return "unknown"
        return "ok"

    @property
    def headline(self) -> Finding | None:
        return headline(self.findings)

    @property
    def verdict(self) -> str:
        top = self.headline
        if top is not None:
            return f"{top.code}: {top.summary}"
        return ALL_GOOD

    @property
    def timings(self) -> dict[str, float]:
        found = {s.name: round(s.elapsed_ms, 1) for s in self.steps if s.status != "skip"}
        found["total"] = round(self.total_ms, 1)
        return found

    def to_json(self) -> dict[str, Any]:
        """The documented JSON object (docs/check.md)."""
        top = self.headline
        return {
            "schema": SCHEMA_VERSION,
            "target": asdict(self.target),
            "status": self.status,
            "headline": None if top is None else top.code,
            "verdict": self.verdict,
            "steps": [asdict(s) | {"elapsed_ms": round(s.elapsed_ms, 1)} for s in self.steps],
            "findings": [asdict(f) | {"evidence": list(f.evidence)} for f in self.findings],
            "timings": self.timings,
            "tls": self.tls,
            "server": self.server,
            "namespaces": self.namespaces,
            "mailboxes": self.mailboxes,
            "selected": self.selected,
            "recent": self.recent,
            "working": self.working,
            "discovery": self.discovery,
            "trace": self.trace,
        }
