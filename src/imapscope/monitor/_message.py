"""What a notification says: one title and text for chat and e-mail (Apprise), and the same
facts as data for webhooks (``type`` names the event; docs/monitors.md shows each payload)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from imapscope.monitor._rules import Notice
from imapscope.store import MonitorView, RunRecord

#: The webhook event type of each notice.
EVENT_TYPES = {
    "opened": "incident.opened",
    "resolved": "incident.resolved",
    "code_changed": "incident.code_changed",
    "reminder": "incident.reminder",
    "escalated": "incident.escalated",
    "flapping": "monitor.flapping",
    "stable": "monitor.stable",
    "test": "channel.test",
}


def _since(opened: str | None, now: dt.datetime) -> str:
    if not opened:
        return ""
    seconds = int((now - dt.datetime.fromisoformat(opened)).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def compose(
    monitor: MonitorView, notice: Notice, run: RunRecord, *, opened: str | None,
    previous_code: str | None, public_url: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The message for ``notice``, raised by ``run`` (``opened``: when the incident opened)."""
    name = monitor.spec.name
    code = notice.code
    lasted = _since(opened, run.at)
    titles = {
        "opened": f"DOWN {name}: {code}",
        "resolved": f"RECOVERED {name}" + (f" after {lasted}" if lasted else ""),
        "code_changed": f"STILL DOWN {name}, now {code} (was {previous_code})",
        "reminder": f"STILL DOWN {name}: {code}, for {lasted}",
        "escalated": f"ESCALATED {name}: {code}, down for {lasted}",
        "flapping": f"FLAPPING {name}: up and down; quiet until it settles",
        "stable": f"SETTLED {name}: " + (f"down, {code}" if code else "up"),
    }
    link = f"{public_url.rstrip('/')}/monitors/{monitor.id}" if public_url else None
    failing = run.status == "fail" and notice.kind != "resolved"
    lines = [run.summary] if failing and run.summary else []
    if notice.kind == "resolved":
        lines.append(f"The last {run.status} run took {round(run.total_ms)} ms.")
    if failing and run.fix:
        lines.append(f"Fix: {run.fix}")
    if failing and run.evidence:
        lines += ["Evidence:", *(f"  {e}" for e in run.evidence)]
    if link:
        lines.append(link)
    target = (f"account {monitor.spec.account_id}" if monitor.spec.account_id is not None
              else str(monitor.spec.host))  # fmt: skip
    return {
        "type": EVENT_TYPES[notice.kind],
        "title": titles[notice.kind],
        "body": "\n".join(lines) or titles[notice.kind],
        "data": {
            "kind": notice.kind,
            "monitor": {"id": monitor.id, "name": name, "group": monitor.spec.group},
            "target": target,
            "account_id": monitor.spec.account_id,
            "code": code,
            "previous_code": previous_code if notice.kind == "code_changed" else None,
            "summary": run.summary if failing else "",
            "fix": run.fix if failing else "",
            "evidence": list(run.evidence) if failing else [],
            "at": run.at.isoformat(),
            "opened": opened,
            "escalation": notice.escalation,
            "link": link,
        },
    }


def test_message(channel_name: str, public_url: str | None) -> dict[str, Any]:
    """The message "Send a test notification" sends."""
    now = dt.datetime.now(dt.UTC)
    return {
        "type": EVENT_TYPES["test"],
        "title": f"imapscope test notification ({channel_name})",
        "body": "This channel works: imapscope's alerts will reach you here."
        + (f"\n{public_url.rstrip('/')}/monitors" if public_url else ""),
        "data": {"kind": "test", "channel": channel_name, "at": now.isoformat()},
    }
