"""Public status pages (no login): one per monitor group that was published, with each
monitor's state, uptime over 24 h / 30 d / 365 d, a strip of its last runs and its recent
incidents. Nothing secret is shown, and no server unless the page allows it; a group that was
not published does not exist here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from imapscope.api._monitors import PERIODS, monitors_of
from imapscope.store import NotFoundError
from imapscope.web._charts import STRIP_RUNS, strip
from imapscope.web._common import page

#: How far back the page lists incidents.
INCIDENTS_SHOWN = PERIODS["30d"]


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/status/{group}")
    async def status(request: Request, group: str) -> HTMLResponse:
        monitors = monitors_of(request)
        store = monitors.store
        published = (await store.status_pages()).get(group)
        if published is None:
            raise NotFoundError("There is no such status page.")
        now = monitors.clock()
        members = [m for m in await store.monitors() if m.spec.group == group and not m.paused]
        uptimes = {p: await store.uptimes(now - PERIODS[p]) for p in ("24h", "30d")}
        latest = await store.latest_runs(STRIP_RUNS)
        rows = []
        for m in members:
            year = await store.stats(m.id, now - PERIODS["365d"], now)
            rows.append({
                "name": m.spec.name, "state": m.state,
                "target": (f"{m.spec.host}" + (f":{m.spec.port}" if m.spec.port else "")
                           if published.get("show_targets") and m.spec.host else ""),
                "day": uptimes["24h"].get(m.id), "month": uptimes["30d"].get(m.id),
                "year": year.uptime,
                "strip": strip(latest.get(m.id, []), label=m.spec.name, slots=STRIP_RUNS),
                "incidents": await store.incidents(m.id, since=now - INCIDENTS_SHOWN, limit=10),
            })  # fmt: skip
        everything_up = all(row["state"] == "up" for row in rows)
        return page(request, "status.html", None, title=published.get("title", "Status"),
                    rows=rows, everything_up=everything_up, now=now)  # fmt: skip

    return r
