"""The monitors pages: all monitors at a glance (state, code, uptime, a strip of the last runs),
one monitor's charts (status timeline, time per step), incidents and runs, the form to add
one; and the channels page (add, test, log)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imapscope.api._monitors import PERIODS, monitors_of
from imapscope.monitor import Rules, prepare, send_test
from imapscope.store import MIN_INTERVAL, MonitorSpec, StoreError
from imapscope.web._charts import STRIP_RUNS, stacked, step_order, strip, timeline
from imapscope.web._common import Sess, page

#: Runs the monitor page charts and lists.
RUNS_SHOWN = 120


async def _rows(request: Request) -> list[dict[str, Any]]:
    monitors = monitors_of(request)
    store = monitors.store
    now = monitors.clock()
    found = await store.monitors()
    day = await store.uptimes(now - PERIODS["24h"])
    month = await store.uptimes(now - PERIODS["30d"])
    latest = await store.latest_runs(STRIP_RUNS)
    return [
        {"monitor": m, "state": m.state, "day": day.get(m.id), "month": month.get(m.id),
         "strip": strip(latest.get(m.id, []), label=m.spec.name, slots=STRIP_RUNS),
         "target": (f"account {m.spec.account_id}" if m.spec.account_id is not None
                    else f"{m.spec.host}" + (f":{m.spec.port}" if m.spec.port else ""))}
        for m in found
    ]  # fmt: skip


async def _detail(request: Request, monitor_id: int) -> dict[str, Any]:
    monitors = monitors_of(request)
    store = monitors.store
    monitor = await store.monitor(monitor_id)
    now = monitors.clock()
    runs = list(reversed(await store.runs(monitor_id, limit=RUNS_SHOWN)))
    name = monitor.spec.name
    return {
        "monitor": monitor, "state": monitor.state, "runs": list(reversed(runs)),
        "stats": {p: await store.stats(monitor_id, now - span, now) for p, span in PERIODS.items()},
        "incidents": await store.incidents(monitor_id, limit=50), "now": now,
        "timeline": timeline(runs, label=name), "stacked": stacked(runs, label=name),
        "steps": step_order(runs),
    }  # fmt: skip


def _form_spec(form: dict[str, str]) -> tuple[MonitorSpec, str | None]:
    """A monitor from the form; ValueError or StoreError says what is wrong."""
    target = form.get("target", "account")
    try:
        interval = int(form.get("interval") or 300)
        port = int(form["port"]) if form.get("port") else None
        chosen = form.get("account_id") if target == "account" else None
        account = int(chosen) if chosen else None
    except ValueError:
        raise ValueError("the interval, port and account must be whole numbers") from None
    channels = tuple(int(c) for c in form.get("channels", "").split(",") if c)
    spec = MonitorSpec(
        name=form.get("name", "").strip(), account_id=account,
        host=(form.get("host") or "").strip() or None if target == "host" else None,
        port=port if target == "host" else None,
        security=form.get("security", "auto") if target == "host" else "auto",
        username=(form.get("user") or None) if target == "host" else None,
        interval=interval, channels=channels, group=form.get("group", "").strip(),
    )  # fmt: skip
    return spec, (form.get("password") or None) if target == "host" else None


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/monitors")
    async def monitors(request: Request, s: Sess) -> HTMLResponse:
        return page(request, "monitors.html", s, rows=await _rows(request))

    @r.get("/ui/monitors/rows")
    async def rows(request: Request, s: Sess) -> HTMLResponse:
        return page(request, "_monitor_rows.html", s, rows=await _rows(request))

    async def form_page(
        request: Request, s: Any, form: dict[str, str], error: str = "", code: int = 200
    ) -> HTMLResponse:
        store = monitors_of(request).store
        return page(request, "monitor_form.html", s, code=code, form=form, error=error,
                    accounts=await store.accounts(), channels=await store.channels(),
                    min_interval=MIN_INTERVAL)  # fmt: skip

    @r.get("/monitors/new")
    async def new(request: Request, s: Sess) -> HTMLResponse:
        return await form_page(request, s, {"target": "account", "interval": "300",
                                            "security": "auto"})  # fmt: skip

    @r.post("/monitors/new")
    async def add(request: Request, s: Sess) -> Response:
        raw = await request.form()
        form = {k: str(v) for k, v in raw.items() if k != "channels"}
        form["channels"] = ",".join(str(c) for c in raw.getlist("channels"))
        monitors = monitors_of(request)
        try:
            spec, secret = _form_spec(form)
            Rules.of(await monitors.store.alert_defaults(), spec.rules)
            added = await monitors.store.add_monitor(spec, secret, now=monitors.clock())
        except (StoreError, ValueError) as exc:
            form.pop("password", None)  # never sent back
            return await form_page(request, s, form, str(exc), code=422)
        monitors.wake()
        return RedirectResponse(f"/monitors/{added.id}", status_code=303)

    @r.get("/monitors/{monitor_id}")
    async def detail(request: Request, monitor_id: int, s: Sess) -> HTMLResponse:
        return page(request, "monitor.html", s, **await _detail(request, monitor_id))

    @r.get("/ui/monitors/{monitor_id}/live")
    async def live(request: Request, monitor_id: int, s: Sess) -> HTMLResponse:
        return page(request, "_monitor_live.html", s, **await _detail(request, monitor_id))

    @r.post("/monitors/{monitor_id}/{action}")
    async def act(request: Request, monitor_id: int, action: str, s: Sess) -> Response:
        monitors = monitors_of(request)
        store, now = monitors.store, monitors.clock()
        if action == "run":
            await store.run_monitor_now(monitor_id, now=now)
        elif action in ("pause", "resume"):
            await store.set_monitor_paused(monitor_id, action == "pause", now=now)
        elif action == "delete":
            await store.remove_monitor(monitor_id)
            return RedirectResponse("/monitors", status_code=303)
        else:
            raise StoreError(f"no action {action!r}: run, pause, resume or delete")
        monitors.wake()
        return RedirectResponse(f"/monitors/{monitor_id}", status_code=303)

    # -- channels ------------------------------------------------------------------------------

    async def channels_page(
        request: Request, s: Any, *, error: str = "", code: int = 200, said: str = "",
        secret: str = "",
    ) -> HTMLResponse:  # fmt: skip
        store = monitors_of(request).store
        failed = await store.notification_failures()
        return page(request, "channels.html", s, code=code, channels=await store.channels(),
                    failed=failed, error=error, said=said, secret=secret)  # fmt: skip

    @r.get("/channels")
    async def channels(request: Request, s: Sess) -> HTMLResponse:
        return await channels_page(request, s)

    @r.post("/channels")
    async def add_channel(request: Request, s: Sess) -> HTMLResponse:
        form = await request.form()
        kind = "webhook" if form.get("kind") == "webhook" else "apprise"
        url = str(form.get("url", "")).strip()
        try:
            shown, signing = prepare(kind, url)
            added = await monitors_of(request).store.add_channel(
                str(form.get("name", "")), kind, url, shown, signing
            )
        except StoreError as exc:
            return await channels_page(request, s, error=str(exc), code=422)
        response = await channels_page(request, s, said=f"Added channel {added.name}.",
                                       secret=signing or "")  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return response

    @r.post("/channels/{channel_id}/test")
    async def test(request: Request, channel_id: int, s: Sess) -> HTMLResponse:
        monitors = monitors_of(request)
        logged = await send_test(monitors.store, channel_id, public_url=str(request.base_url))
        if logged.status == "sent":
            return await channels_page(request, s, said="The test notification was sent.")
        said = f"The test notification did not arrive: {logged.last_error}"
        return await channels_page(request, s, code=502, error=said)

    @r.post("/channels/{channel_id}/delete")
    async def delete_channel(request: Request, channel_id: int, s: Sess) -> Response:
        await monitors_of(request).store.remove_channel(channel_id)
        return RedirectResponse("/channels", status_code=303)

    @r.get("/channels/{channel_id}")
    async def channel_log(request: Request, channel_id: int, s: Sess) -> HTMLResponse:
        store = monitors_of(request).store
        return page(request, "channel.html", s, channel=await store.channel(channel_id),
                    log=await store.notifications(channel_id=channel_id))  # fmt: skip

    return r
