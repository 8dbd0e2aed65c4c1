"""``imapscope monitors``, ``channels`` and ``maintenance``: set up what ``serve`` watches over
time and where it tells you, on the same data directory (or database) as ``serve``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imapscope.cli_serve import DataDir, console, fail, read_secret, table, with_store

if TYPE_CHECKING:
    from imapscope.store import MonitorView, Store

monitors_app = typer.Typer(help="Scheduled checks of accounts or servers, with alerts.")
channels_app = typer.Typer(help="Where alerts go: any Apprise URL, or a signed webhook.")
maintenance_app = typer.Typer(help="Windows in which monitors raise no alert.")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _state(monitor: MonitorView) -> str:
    code = monitor.alert.get("code") if monitor.state == "down" else None
    return f"{monitor.state} ({code})" if code else monitor.state


@monitors_app.command("add")
def monitors_add(
    name: str = typer.Argument(..., help="What to call it (shown in alerts)."),
    account: int | None = typer.Option(None, "--account", help="A registered account's id."),
    host: str | None = typer.Option(None, "--host", help="Or any IMAP server."),
    port: int | None = typer.Option(None, "--port"),
    security: str = typer.Option("auto", "--security", help="auto, tls, starttls or none."),
    user: str | None = typer.Option(None, "--user", help="Log in as (with --host)."),
    password_env: str | None = typer.Option(None, "--password-env", help="Read it from VAR."),
    password_file: Path | None = typer.Option(None, "--password-file", help="Read it from a file."),
    interval: int = typer.Option(300, "--interval", help="Seconds between runs (5 or more)."),
    write_tests: bool = typer.Option(False, "--write-tests", help="Also the write tests."),
    group: str = typer.Option("", "--group", help="A group name (for status pages)."),
    channel: list[int] = typer.Option([], "--channel", help="Alert this channel (repeatable)."),
    escalate_to: list[int] = typer.Option(
        [], "--escalate-to", help="Escalation channel (repeatable)."
    ),
    fail_after: int | None = typer.Option(None, "--fail-after", help="Failures to open."),
    recover_after: int | None = typer.Option(None, "--recover-after", help="Successes to resolve."),
    remind_every: int | None = typer.Option(
        None, "--remind-every", help="Seconds between reminders."
    ),
    escalate_after: int | None = typer.Option(
        None, "--escalate-after", help="Seconds open before escalating."
    ),
    roundtrip: bool = typer.Option(
        False,
        "--roundtrip",
        help="A round trip: mail sent over SMTP to --account, watched arriving.",
    ),
    sync: bool = typer.Option(False, "--sync", help="--account's sync health (state, errors)."),
    smtp_host: str | None = typer.Option(None, "--smtp-host", help="Round trip: SMTP server."),
    smtp_port: int | None = typer.Option(None, "--smtp-port", help="Default 587, 465 or 25."),
    smtp_security: str = typer.Option("starttls", "--smtp-security", help="starttls, tls, none."),
    smtp_user: str | None = typer.Option(
        None, "--smtp-user", help="Log in as (its password: --password-env/--password-file)."
    ),
    sender: str | None = typer.Option(None, "--from", help="Round trip: the sender address."),
    deadline: int = typer.Option(300, "--deadline", help="Seconds before a probe is lost."),
    data_dir: Path | None = DataDir,
) -> None:
    """Add a monitor: the check ladder every --interval seconds (or with --roundtrip a message
    submitted over SMTP and watched arriving in --account), alerts to --channel."""
    from imapscope.monitor import Rules  # noqa: PLC0415
    from imapscope.store import MonitorSpec  # noqa: PLC0415

    rules = {k: v for k, v in (("fail_after", fail_after), ("recover_after", recover_after),
                               ("remind_every", remind_every), ("escalate_after", escalate_after))
             if v is not None}  # fmt: skip
    smtp: dict[str, Any] = {}
    if roundtrip:
        smtp = {"host": smtp_host or "", "security": smtp_security, "user": smtp_user,
                "from": sender or "", "deadline": deadline}  # fmt: skip
        if smtp_port is not None:
            smtp["port"] = smtp_port
    spec = MonitorSpec(
        name=name, kind="roundtrip" if roundtrip else "sync" if sync else "check",
        account_id=account, host=host,
        port=port, security=security, username=user, interval=interval,
        write_tests=write_tests, group=group, channels=tuple(channel),
        escalation_channels=tuple(escalate_to), rules=rules, smtp=smtp,
    )  # fmt: skip
    secret = None
    if password_env or password_file:
        if account is not None and not roundtrip:
            fail("a monitor of an account uses the account's password; leave --password-* out")
        secret = read_secret(password_env, password_file)

    async def add(store: Store) -> MonitorView:
        Rules.of(await store.alert_defaults(), rules)
        return await store.add_monitor(spec, secret, now=_now())

    added = with_store(data_dir, add)
    console.print(f"added monitor {added.id}: {added.spec.name}, every {interval} s (a running "
                  "serve runs it at once, then on schedule)")  # fmt: skip


@monitors_app.command("list")
def monitors_list(
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    data_dir: Path | None = DataDir,
) -> None:
    """Every monitor with its state (up, down with the code, paused) and next run."""
    from imapscope.api._monitors import monitor_out  # noqa: PLC0415

    async def rows(store: Store) -> list[dict[str, Any]]:
        return [monitor_out(m) | {"shown_state": _state(m)} for m in await store.monitors()]

    found = with_store(data_dir, rows)
    if as_json:
        console.print_json(json.dumps([{k: v for k, v in r.items() if k != "shown_state"}
                                       for r in found]))  # fmt: skip
        return
    if not found:
        console.print("No monitors. Add one with 'imapscope monitors add'.")
        return
    shown = table("id", "name", "target", "every", "state", "next run")
    for r in found:
        target = f"account {r['account_id']}" if r["account_id"] else r["host"]
        shown.add_row(str(r["id"]), r["name"], str(target), f"{r['interval']} s",
                      r["shown_state"], (r["next_run"] or "-")[:19])  # fmt: skip
    console.print(shown)


@monitors_app.command("show")
def monitors_show(
    monitor_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of text."),
    data_dir: Path | None = DataDir,
) -> None:
    """A monitor: settings, uptime over 24 h / 30 d / 365 d, its last runs and incidents."""
    from imapscope.api._monitors import PERIODS, incident_out, monitor_out, stats_out  # noqa: PLC0415

    async def show(store: Store) -> dict[str, Any]:
        monitor = await store.monitor(monitor_id)
        now = _now()
        return {
            "monitor": monitor_out(monitor),
            "stats": {name: stats_out(await store.stats(monitor_id, now - span, now))
                      for name, span in PERIODS.items()},
            "runs": [dataclasses.asdict(r) | {"at": r.at.isoformat()}
                     for r in await store.runs(monitor_id, limit=10)],
            "incidents": [incident_out(i, now)
                          for i in await store.incidents(monitor_id, limit=10)],
        }  # fmt: skip

    found = with_store(data_dir, show)
    if as_json:
        console.print_json(json.dumps(found))
        return
    m = found["monitor"]
    console.print(f"[bold]{m['name']}[/] (monitor {m['id']}): {m['state']}"
                  + (f", {m['code']}" if m["code"] else ""))  # fmt: skip
    uptimes = ", ".join(
        f"{name} {'-' if s['uptime'] is None else str(s['uptime']) + ' %'}"
        for name, s in found["stats"].items()
    )
    console.print(f"uptime: {uptimes}")
    runs = table("at", "status", "code", "total ms")
    for r in found["runs"]:
        runs.add_row(r["at"][:19], r["status"], r["code"] or "", str(round(r["total_ms"])))
    console.print(runs)
    if found["incidents"]:
        incidents = table("opened", "resolved", "codes", "lasted")
        for i in found["incidents"]:
            incidents.add_row(i["opened"][:19], (i["resolved"] or "open")[:19],
                              " -> ".join(i["codes"]), f"{round(i['duration_s'])} s")  # fmt: skip
        console.print(incidents)


def _set_paused(monitor_id: int, paused: bool, data_dir: Path | None) -> None:
    async def run(store: Store) -> None:
        await store.set_monitor_paused(monitor_id, paused, now=_now())

    with_store(data_dir, run)
    console.print(f"monitor {monitor_id} {'paused' if paused else 'resumed'}")


@monitors_app.command("pause")
def monitors_pause(monitor_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Stop running it (its history stays)."""
    _set_paused(monitor_id, True, data_dir)


@monitors_app.command("resume")
def monitors_resume(monitor_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    _set_paused(monitor_id, False, data_dir)


@monitors_app.command("remove")
def monitors_remove(monitor_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Delete it with its history and incidents."""

    async def run(store: Store) -> None:
        await store.remove_monitor(monitor_id)

    with_store(data_dir, run)
    console.print(f"removed monitor {monitor_id}")


# -- channels -----------------------------------------------------------------------------------


@channels_app.command("add")
def channels_add(
    name: str = typer.Argument(..., help="What to call it."),
    url_env: str | None = typer.Option(
        None, "--url-env", help="Read the URL from VAR (it carries secrets: keep it off argv)."
    ),
    url: str | None = typer.Option(None, "--url", help="The Apprise URL (or webhook URL)."),
    webhook: bool = typer.Option(False, "--webhook", help="A signed JSON webhook."),
    data_dir: Path | None = DataDir,
) -> None:
    """Add a channel: an Apprise URL (mailto://, slack://, ntfy://, ...) or --webhook."""
    import os  # noqa: PLC0415

    from imapscope.monitor import prepare  # noqa: PLC0415

    given = os.environ.get(url_env, "") if url_env else url
    if not given:
        fail("give the channel's URL with --url-env VAR (or --url)")
    kind = "webhook" if webhook else "apprise"

    async def add(store: Store) -> Any:
        shown, signing = prepare(kind, given)
        return await store.add_channel(name, kind, given.strip(), shown, signing), signing

    added, signing = with_store(data_dir, add)
    console.print(f"added channel {added.id}: {added.name} ({added.shown})")
    if signing:
        console.print(f"signing secret (shown once): {signing}")


@channels_app.command("list")
def channels_list(
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    data_dir: Path | None = DataDir,
) -> None:
    """Every channel (URLs masked) and how many of its notifications failed."""
    from imapscope.api._monitors import channel_out  # noqa: PLC0415

    async def rows(store: Store) -> list[dict[str, Any]]:
        failed = await store.notification_failures()
        return [channel_out(c, failed.get(c.id, 0)) for c in await store.channels()]

    found = with_store(data_dir, rows)
    if as_json:
        console.print_json(json.dumps(found))
        return
    shown = table("id", "name", "kind", "url", "failed")
    for r in found:
        shown.add_row(str(r["id"]), r["name"], r["kind"], r["shown"],
                      str(r["failed_notifications"]))  # fmt: skip
    console.print(shown)


@channels_app.command("test")
def channels_test(channel_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Send a test notification now; fails with the reason when it does not arrive."""
    from imapscope.monitor import send_test  # noqa: PLC0415

    async def run(store: Store) -> Any:
        return await send_test(store, channel_id, public_url=None)

    logged = with_store(data_dir, run)
    if logged.status != "sent":
        fail(f"the test notification did not arrive: {logged.last_error}")
    console.print(f"sent a test notification to channel {channel_id}")


@channels_app.command("log")
def channels_log(channel_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """The channel's notifications, newest first, with attempts and errors."""

    async def rows(store: Store) -> Any:
        return await store.notifications(channel_id=channel_id, limit=50)

    shown = table("id", "created", "kind", "status", "attempts", "title", "last error")
    for n in with_store(data_dir, rows):
        shown.add_row(str(n.id), n.created.isoformat()[:19], n.kind, n.status, str(n.attempts),
                      n.title, n.last_error)  # fmt: skip
    console.print(shown)


@channels_app.command("remove")
def channels_remove(channel_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    async def run(store: Store) -> None:
        await store.remove_channel(channel_id)

    with_store(data_dir, run)
    console.print(f"removed channel {channel_id}")


# -- maintenance --------------------------------------------------------------------------------


def _when(text: str, option: str) -> dt.datetime:
    try:
        found = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a time: use ISO 8601, e.g. 2026-12-24T22:00+01:00")
    return found


@maintenance_app.command("add")
def maintenance_add(
    starts: str = typer.Option(..., "--starts", help="ISO 8601 with a zone: 2026-12-24T22:00Z"),
    ends: str = typer.Option(..., "--ends", help="ISO 8601 with a zone."),
    monitor: int | None = typer.Option(None, "--monitor", help="Only this monitor (else all)."),
    weekly: bool = typer.Option(False, "--weekly", help="Repeat every 7 days."),
    reason: str = typer.Option("", "--reason"),
    data_dir: Path | None = DataDir,
) -> None:
    """A window in which runs raise no alert and do not count against uptime."""

    async def add(store: Store) -> Any:
        return await store.add_maintenance(
            _when(starts, "--starts"), _when(ends, "--ends"), monitor_id=monitor, weekly=weekly,
            reason=reason,
        )  # fmt: skip

    added = with_store(data_dir, add)
    console.print(f"added maintenance window {added.id}")


@maintenance_app.command("list")
def maintenance_list(data_dir: Path | None = DataDir) -> None:
    async def rows(store: Store) -> Any:
        return await store.maintenance_windows()

    shown = table("id", "monitor", "starts", "ends", "weekly", "reason")
    for w in with_store(data_dir, rows):
        shown.add_row(str(w.id), str(w.monitor_id or "all"), w.starts.isoformat(),
                      w.ends.isoformat(), "yes" if w.weekly else "", w.reason)  # fmt: skip
    console.print(shown)


@maintenance_app.command("remove")
def maintenance_remove(
    window_id: int = typer.Argument(...), data_dir: Path | None = DataDir
) -> None:
    async def run(store: Store) -> None:
        await store.remove_maintenance(window_id)

    with_store(data_dir, run)
    console.print(f"removed maintenance window {window_id}")


# -- reports ------------------------------------------------------------------------------------


def report_command(
    period: str = typer.Option(
        "7d", "--period", help="7d, 30d, week (last full), month (last full) or custom."
    ),
    since: str | None = typer.Option(None, "--since", help="custom: start, ISO 8601 with zone."),
    until: str | None = typer.Option(None, "--until", help="custom: end (not included)."),
    form: str | None = typer.Option(
        None, "--format", help="json, csv, html or pdf (default: a table on the terminal)."
    ),
    monitor: list[int] = typer.Option([], "--monitor", help="Only this monitor (repeatable)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write it to this file."),
    data_dir: Path | None = DataDir,
) -> None:
    """A report over a period: uptime, incidents, MTTR, time per step, round-trip losses."""
    from imapscope.monitor._report import build, render  # noqa: PLC0415
    from imapscope.monitor._report import period as period_of  # noqa: PLC0415
    from imapscope.store import StoreError  # noqa: PLC0415

    start = _when(since, "--since") if since else None
    end = _when(until, "--until") if until else None

    async def make(store: Store) -> dict[str, Any]:
        now = _now()
        first, last = period_of(period, now, start, end)
        return await build(store, first, last, now=now, monitor_ids=monitor or None)

    made = with_store(data_dir, make)
    if form is None:
        shown = table("monitor", "uptime", "runs", "failed", "incidents", "downtime", "MTTR")
        for m in made["monitors"]:
            shown.add_row(
                m["name"], "-" if m["uptime"] is None else f"{m['uptime']:.3f} %", str(m["runs"]),
                str(m["failures"]), str(len(m["incidents"])), f"{m['downtime_s'] / 60:.1f} min",
                "-" if m["mttr_s"] is None else f"{m['mttr_s'] / 60:.1f} min",
            )  # fmt: skip
        console.print(f"{made['start']} to {made['end']} (UTC)")
        console.print(shown)
        console.print(f"[dim]{made['rule']}[/]")
        return
    try:
        data = render(made, form)
    except StoreError as exc:  # an unknown format, or a PDF without Pango
        fail(str(exc))
    if output is not None:
        output.write_bytes(data)
        console.print(f"wrote {output} ({len(data)} bytes)")
    elif form == "pdf" and sys.stdout.isatty():
        fail("a PDF is not for a terminal: give --output FILE (or redirect it)")
    else:
        sys.stdout.buffer.write(data)
