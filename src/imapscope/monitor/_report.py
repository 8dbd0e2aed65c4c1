"""Reports over a period: per monitor, uptime (maintenance left out, the accounting rule printed
on the report), incidents with their durations and codes, MTTR, time per step (p50/p95/p99) and
round-trip losses. One data model (:func:`build`, its JSON), four renderings: JSON, CSV (one
row per monitor), HTML (printable, self-contained) and PDF (WeasyPrint, from the HTML).

Periods are ``[start, end)`` in UTC. ``week`` and ``month`` are the calendar week (Monday to
Monday) and month before the one ``at`` falls in, as a scheduled report sends them; ``7d`` and
``30d`` end at ``at``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from pathlib import Path
from typing import Any

import jinja2

from imapscope.store import MonitorView, Store, StoreError

SCHEMA = 1
PERIODS = ("week", "month", "7d", "30d", "custom")
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "html": "text/html; charset=utf-8", "pdf": "application/pdf"}  # fmt: skip
ACCOUNTING_RULE = (
    "Uptime is the share of runs that did not fail among the runs outside maintenance windows "
    "in the period (UTC, start included, end excluded); a warning counts as up, a run in a "
    "maintenance window counts neither way. Downtime is the time incidents were open within the "
    "period; MTTR is the mean duration of the incidents resolved in it. Beyond the last 30 days "
    "runs are kept as hourly roll-ups, counted whole hours, and their percentiles are bucket "
    "bounds."
)
#: Incidents a report lists, all monitors together (a flapping year stays readable).
MAX_INCIDENTS = 100_000
#: The longest period a report covers (history is kept for 400 days).
MAX_PERIOD = dt.timedelta(days=400)
CSV_COLUMNS = ("monitor_id", "name", "kind", "target", "uptime_percent", "runs", "failures",
               "maintenance_runs", "incidents", "downtime_s", "mttr_s", "total_p50_ms",
               "total_p95_ms", "total_p99_ms", "roundtrips_lost")  # fmt: skip

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip


def period(name: str, at: dt.datetime, since: dt.datetime | None = None,
           until: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:  # fmt: skip
    """The ``[start, end)`` of a named period (see the module's docstring)."""
    at = at.astimezone(dt.UTC)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if name == "week":
        end = midnight - dt.timedelta(days=midnight.weekday())
        return end - dt.timedelta(days=7), end
    if name == "month":
        end = midnight.replace(day=1)
        return (end - dt.timedelta(days=1)).replace(day=1), end
    if name in ("7d", "30d"):
        return at - dt.timedelta(days=int(name[:-1])), at
    if name != "custom":
        raise StoreError(f"period {name!r} is unknown: use {', '.join(PERIODS)}")
    if since is None or until is None:
        raise StoreError("a custom period needs since and until (ISO 8601 with a zone)")
    if since.tzinfo is None or until.tzinfo is None:
        raise StoreError("give since and until with a time zone (Z for UTC)")
    if until <= since:
        raise StoreError(f"the period ends ({until.isoformat()}) before it starts "
                         f"({since.isoformat()}); give an end after the start")  # fmt: skip
    if until - since > MAX_PERIOD:
        raise StoreError(f"a report covers at most {MAX_PERIOD.days} days (the history kept)")
    return since.astimezone(dt.UTC), until.astimezone(dt.UTC)


def _target(monitor: MonitorView) -> str:
    spec = monitor.spec
    if spec.account_id is not None:
        return f"account {spec.account_id}"
    return f"{spec.host}" + (f":{spec.port}" if spec.port else "")


async def build(
    store: Store, start: dt.datetime, end: dt.datetime, *, now: dt.datetime,
    monitor_ids: list[int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The report's data (documented in docs/monitors.md)."""
    chosen = [m for m in await store.monitors() if not monitor_ids or m.id in monitor_ids]
    if monitor_ids:
        missing = sorted(set(monitor_ids) - {m.id for m in chosen})
        if missing:
            raise StoreError(f"no monitor with id {', '.join(map(str, missing))}")
    every_stats = await store.stats_of([m.id for m in chosen], start, end)
    by_monitor: dict[int, list[Any]] = {m.id: [] for m in chosen}
    for incident in await store.incidents(since=start, limit=MAX_INCIDENTS):
        if incident.opened < end and incident.monitor_id in by_monitor:
            by_monitor[incident.monitor_id].append(incident)
    rows = []
    for monitor in chosen:
        stats = every_stats[monitor.id]
        incidents = by_monitor[monitor.id]
        resolved = [i.duration(now) for i in incidents if i.resolved and start <= i.resolved < end]
        downtime = sum(
            max(0.0, (min(i.resolved or now, end) - max(i.opened, start)).total_seconds())
            for i in incidents
        )
        row: dict[str, Any] = {
            "id": monitor.id, "name": monitor.spec.name, "kind": monitor.spec.kind,
            "group": monitor.spec.group, "target": _target(monitor),
            "uptime": stats.uptime, "runs": stats.runs, "failures": stats.failures,
            "maintenance_runs": stats.maintenance, "codes": stats.codes,
            "downtime_s": round(downtime, 1),
            "mttr_s": round(statistics.fmean(resolved), 1) if resolved else None,
            "incidents": [
                {"id": i.id, "opened": i.opened.isoformat(),
                 "resolved": i.resolved.isoformat() if i.resolved else None,
                 "duration_s": round(i.duration(now), 1), "codes": list(i.codes)}
                for i in sorted(incidents, key=lambda i: i.opened)
            ],
            "steps": {name: {"n": s.n, "p50": s.p50, "p95": s.p95, "p99": s.p99, "max": s.max}
                      for name, s in stats.steps.items()},
        }  # fmt: skip
        if monitor.spec.kind == "roundtrip":
            deliver = stats.steps.get("deliver")
            unsent = sum(n for c, n in stats.codes.items() if c.startswith("SMTP_"))
            row["roundtrip"] = {
                "sent": stats.runs - unsent,
                "lost": stats.codes.get("DELIVERY_LOST", 0),
                "junk": stats.codes.get("DELIVERY_JUNK", 0),
                "deliver_p50_ms": deliver.p50 if deliver else None,
                "deliver_p95_ms": deliver.p95 if deliver else None,
                "deliver_p99_ms": deliver.p99 if deliver else None,
            }  # fmt: skip
        rows.append(row)
    return {
        "schema": SCHEMA, "start": start.isoformat(), "end": end.isoformat(),
        "generated": now.isoformat(), "rule": ACCOUNTING_RULE, "monitors": rows,
    }  # fmt: skip


def to_csv(report: dict[str, Any]) -> str:
    """One row per monitor (:data:`CSV_COLUMNS`); the incidents are in the other formats."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for m in report["monitors"]:
        total = m["steps"].get("total", {})
        writer.writerow([
            m["id"], m["name"], m["kind"], m["target"],
            "" if m["uptime"] is None else m["uptime"], m["runs"], m["failures"],
            m["maintenance_runs"], len(m["incidents"]), m["downtime_s"],
            "" if m["mttr_s"] is None else m["mttr_s"], *(
                "" if total.get(q) is None else total[q] for q in ("p50", "p95", "p99")),
            m.get("roundtrip", {}).get("lost", ""),
        ])  # fmt: skip
    return out.getvalue()


def to_html(report: dict[str, Any]) -> str:
    return _templates.get_template("report.html").render(report=report)


def to_pdf(report: dict[str, Any]) -> bytes:
    """The HTML report as PDF (WeasyPrint; it needs the Pango library installed)."""
    try:
        import weasyprint  # type: ignore[import-untyped]  # noqa: PLC0415 - heavy, needs Pango
    except (ImportError, OSError) as exc:
        raise StoreError(
            f"PDF reports need WeasyPrint and the Pango library ({exc}); on Debian: apt-get "
            "install libpango-1.0-0 libpangoft2-1.0-0 (or ask for format html and print it)"
        ) from None
    pdf = weasyprint.HTML(string=to_html(report)).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf


def render(report: dict[str, Any], form: str) -> bytes:
    """The report in ``form`` (json, csv, html, pdf)."""
    if form == "json":
        import json  # noqa: PLC0415

        return json.dumps(report, indent=2).encode()
    if form == "csv":
        return to_csv(report).encode()
    if form == "html":
        return to_html(report).encode()
    if form == "pdf":
        return to_pdf(report)
    raise StoreError(f"format {form!r} is unknown: use {', '.join(FORMATS)}")


def file_name(report: dict[str, Any], form: str) -> str:
    return f"imapscope-report-{report['start'][:10]}-{report['end'][:10]}.{form}"
