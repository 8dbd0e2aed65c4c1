"""Monitors at scale, and reports over a year.

    .venv/bin/python -m bench.monitors [--monitors 1000] [--interval 60] [--minutes 3]
        [--report-monitors 100]

1. Scheduling: ``--monitors`` check monitors (the full ladder: TLS, login, folders, IDLE)
   every ``--interval`` seconds against `imapscope sandbox` (its own process, open mode), run
   by one `imapscope serve` process on SQLite. After one interval of warm-up (the first runs
   spread over it), for ``--minutes``: scheduling drift (each run's start minus its due time:
   p50, p99, max), runs per second, and serve's CPU as a share of one core.
2. Reports: ``--report-monitors`` monitors with a year of history as the store keeps it (30
   days of raw runs every 5 minutes; hourly and daily roll-ups of the whole year), then the
   report over the 365 days (JSON data model, and PDF) and the database's size per monitor-year.

Targets (issue 14): drift p99 <= 1 s and serve CPU <= 50 % of one core at 1,000 monitors every
60 s; a year's report for 100 monitors in <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import resource
import tempfile
import time
from pathlib import Path

from tests.scripted import sandbox_process

from bench._sandbox import read_banner
from bench.accounts_idle import cpu_seconds, serve, stop
from imapscope.monitor._report import build, to_pdf
from imapscope.store import BUCKETS_MS, DB_FILE, MonitorSpec, RunRecord, Store
from imapscope.store._models import MonitorHour


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


async def add_monitors(data: Path, n: int, interval: int, port: int) -> None:
    store = await Store.open(data)
    try:
        now = dt.datetime.now(dt.UTC)
        for i in range(n):
            spec = MonitorSpec(f"m{i}", host="localhost", port=port, security="tls",
                               username=f"user{i}", interval=interval)  # fmt: skip
            await store.add_monitor(spec, f"pw{i}", now=now, spread=True)
    finally:
        await store.close()


async def drift(data: Path, since: dt.datetime) -> tuple[list[float], dict[str, int]]:
    """Lateness (s) of every run started since ``since``, and the runs by status."""
    store = await Store.open(data)
    try:
        late: list[float] = []
        statuses: dict[str, int] = {}
        for monitor in await store.monitors():
            for run in await store.runs(monitor.id, since=since, limit=5000):
                late.append(run.late_ms / 1000)
                statuses[run.status] = statuses.get(run.status, 0) + 1
        return late, statuses
    finally:
        await store.close()


def scheduling(args: argparse.Namespace, work: Path) -> None:
    proc, banner = sandbox_process(
        "--open", "--port", "0", "--tls-port", "0", "--smtp-port", "0", "--admin-port", "0",
        "--data-dir", str(work / "sandbox"),
    )  # fmt: skip
    try:
        box = read_banner(banner)
        tls_port, ca_file = box.tls_port, box.ca_file
        data = work / "serve"
        asyncio.run(add_monitors(data, args.monitors, args.interval, tls_port))
        started = serve(data, ca_file)
        try:
            warm = args.interval + 10
            print(f"{args.monitors} monitors every {args.interval} s; warming up {warm} s ...")
            time.sleep(warm)
            since = dt.datetime.now(dt.UTC)
            cpu0, t0 = cpu_seconds(started.proc.pid), time.monotonic()
            time.sleep(args.minutes * 60)
            cpu = cpu_seconds(started.proc.pid) - cpu0
            wall = time.monotonic() - t0
        finally:
            stop(started.proc)
        late, statuses = asyncio.run(drift(data, since))
        count = len(late)
        expected = args.monitors * args.minutes * 60 / args.interval
        print(f"runs: {count} in {wall:.0f} s ({count / wall:.1f}/s; expected about "
              f"{expected:.0f}); statuses {statuses}")  # fmt: skip
        print(f"drift: p50 {pct(late, 50):.3f} s, p99 {pct(late, 99):.3f} s, max {max(late):.3f} s"
              f"  (target p99 <= 1 s)")  # fmt: skip
        print(f"serve CPU: {cpu:.1f} s in {wall:.0f} s = {100 * cpu / wall:.1f} % of one core "
              f"(target <= 50 %); {1000 * cpu / max(count, 1):.1f} ms per run")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)


async def year_of_history(data: Path, monitors: int, now: dt.datetime) -> list[int]:
    """``monitors`` monitors with 30 days of raw runs (every 5 min) and 335 days of hours."""
    store = await Store.open(data)
    rng = random.Random(7)
    ids = []
    try:
        for i in range(monitors):
            monitor = await store.add_monitor(MonitorSpec(f"m{i}", host="localhost"), now=now)
            ids.append(monitor.id)
            runs = []
            for k in range(30 * 288):
                ms = rng.lognormvariate(4.5, 0.4)
                failed = rng.random() < 0.002
                runs.append(RunRecord(
                    at=now - dt.timedelta(minutes=5 * k + 1), status="fail" if failed else "ok",
                    code="TCP_TIMEOUT" if failed else None, total_ms=round(ms * 4, 1),
                    steps=(("dns", "pass", 1.0), ("tcp", "pass", round(ms / 4, 1)),
                           ("tls", "pass", round(ms, 1)), ("login", "pass", round(ms, 1))),
                ))  # fmt: skip
            await store.import_runs(monitor.id, runs)
            hours = []
            first = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=30)
            for h in range(1, 335 * 24):
                histogram = {str(BUCKETS_MS.index(100)): 9, str(BUCKETS_MS.index(300)): 3}
                step = {"n": 12, "p50": 100.0, "p95": 200.0, "max": 300.0, "h": histogram}
                hours.append(MonitorHour(
                    monitor_id=monitor.id, hour=first - dt.timedelta(hours=h), runs=12,
                    failures=0, maintenance=0, codes={},
                    steps=dict.fromkeys(("dns", "tcp", "tls", "login", "total"), step),
                ))  # fmt: skip
            async with store._session() as s:
                s.add_all(hours)
                await s.commit()
        # As the hourly job would have: the raw month into hours, every past day into days.
        started = time.perf_counter()
        await store.roll_up(now)
        print(f"roll-up of the year: {time.perf_counter() - started:.0f} s")
        return ids
    finally:
        await store.close()


def reports(args: argparse.Namespace, work: Path) -> None:
    data = work / "report"
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    asyncio.run(year_of_history(data, args.report_monitors, now))
    print(f"history for {args.report_monitors} monitors written in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip

    async def report() -> tuple[float, float, int]:
        store = await Store.open(data)
        try:
            t0 = time.perf_counter()
            made = await build(store, now - dt.timedelta(days=365), now, now=now)
            t1 = time.perf_counter()
            pdf = to_pdf(made)
            return t1 - t0, time.perf_counter() - t1, len(pdf)
        finally:
            await store.close()

    took, pdf_took, pdf_size = asyncio.run(report())
    size = sum(p.stat().st_size for p in data.iterdir() if p.name.startswith(DB_FILE))
    print(f"report over 365 days for {args.report_monitors} monitors: {took:.2f} s (target "
          f"<= 2 s); as PDF {pdf_took:.2f} s more ({pdf_size // 1024} KiB)")  # fmt: skip
    per_year = size / args.report_monitors
    print(f"database: {size / 2**20:.1f} MiB, {per_year / 2**20:.2f} MiB per monitor-year "
          "(30 days raw every 5 min, a year of hourly and daily roll-ups)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--report-monitors", type=int, default=100)
    parser.add_argument("--skip-scheduling", action="store_true")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="imapscope-bench-monitors-"))
    if not args.skip_scheduling:
        scheduling(args, work)
    reports(args, work)


if __name__ == "__main__":
    main()
