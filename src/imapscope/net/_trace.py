"""Trace events: everything the connection layer does, as data.

Each operation emits ``<name>.started``, then ``<name>.complete`` or ``<name>.failed``, with the
elapsed time and details (addresses, TLS version, cipher, certificate, error). The check report,
JSON output, wire log and (later) metrics are consumers of these events, never parallel
bookkeeping. Details never hold secrets: the codec redacts them before they exist as bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["started", "complete", "failed"]


@dataclass(frozen=True, slots=True)
class TraceEvent:
    name: str  # e.g. "connect_tcp"
    phase: Phase
    elapsed_ms: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.name}.{self.phase}"


Tracer = Callable[[TraceEvent], None]


def ignore(event: TraceEvent) -> None:
    """The tracer used when nobody listens."""


@dataclass(slots=True)
class Span:
    """An operation in progress; add details as they become known."""

    name: str
    details: dict[str, Any]
    started: float


@contextmanager
def span(tracer: Tracer, name: str, **details: Any) -> Iterator[Span]:
    """Emit started, then complete or failed (with the exception's type and message)."""
    current = Span(name, details, time.perf_counter())  # (details: a fresh dict already)
    if tracer is ignore:  # nobody listens: no events to build (serve's every command)
        yield current
        return
    tracer(TraceEvent(name, "started", None, dict(details)))
    try:
        yield current
    except BaseException as exc:
        elapsed = (time.perf_counter() - current.started) * 1000
        failure = {**current.details, "error": type(exc).__name__, "message": str(exc)}
        tracer(TraceEvent(name, "failed", elapsed, failure))
        raise
    elapsed = (time.perf_counter() - current.started) * 1000
    tracer(TraceEvent(name, "complete", elapsed, dict(current.details)))
