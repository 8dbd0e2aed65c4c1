"""Monitor history against a history built by hand: uptime over 24 h / 7 d / 30 d / 365 d with
maintenance left out, exact percentiles from raw runs, bucket bounds once a period reaches into
the hourly and daily roll-ups, codes counted, roll-ups idempotent and old data dropped; on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from imapscope.store import BUCKETS_MS, RUN_JOB, MonitorSpec, Outgoing, RunRecord, Store

pytestmark = pytest.mark.usefixtures("database")

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def run(hours_ago: float, status: str = "ok", *, ms: float = 100.0, code: str | None = None,
        maintenance: bool = False) -> RunRecord:  # fmt: skip
    return RunRecord(
        at=NOW - dt.timedelta(hours=hours_ago), status=status, code=code,
        total_ms=ms + 10, steps=(("tcp", "pass", 10.0), ("login", "pass", ms),
                                 ("idle", "skip", 0.0)),
        maintenance=maintenance,
    )  # fmt: skip


def test_uptime_and_percentiles_match_a_history_built_by_hand(tmp_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(tmp_path)
        try:
            monitor = await store.add_monitor(MonitorSpec("hand", host="localhost"), now=NOW)
            runs = (
                # The last day: 20 runs, 2 failed, 3 in maintenance (failed, but not counted).
                [run(0.1 + h / 2, ms=100 + h) for h in range(18)]
                + [run(10, "fail", code="AUTH_FAILED"), run(11, "fail", code="TCP_TIMEOUT")]
                + [run(12 + h / 10, "fail", code="TCP_REFUSED", maintenance=True) for h in range(3)]
                # A warning counts as up.
                + [run(20, "warning", code="SLOW_SERVER")]
                # 3 to 6 days ago: 10 runs, 5 failed.
                + [run(72 + 7 * h, "fail" if h % 2 else "ok", code="AUTH_FAILED" if h % 2 else None)
                   for h in range(10)]
                # 40 and 200 days ago: rolled up into hours.
                + [run(40 * 24 + h / 60, ms=40.0) for h in range(30)]
                + [run(200 * 24, "fail", ms=5000.0, code="DNS_NXDOMAIN")]
            )  # fmt: skip
            await store.import_runs(monitor.id, runs)

            async def uptime(days: float) -> tuple[int, int, float | None]:
                found = await store.stats(monitor.id, NOW - dt.timedelta(days=days), NOW)
                return found.runs, found.failures, found.uptime

            # 18 ok + 2 failed + 1 warning = 21 runs, 2 failed; 3 in maintenance left out.
            assert await uptime(1) == (21, 2, round(100 * 19 / 21, 3))
            assert await uptime(7) == (31, 7, round(100 * 24 / 31, 3))
            day = await store.stats(monitor.id, NOW - dt.timedelta(days=1), NOW)
            assert day.maintenance == 3
            assert day.codes == {"AUTH_FAILED": 1, "TCP_TIMEOUT": 1, "SLOW_SERVER": 1}
            logins = sorted([100 + h for h in range(18)] + [100.0] * 3)
            assert day.steps["login"].p50 == logins[10]  # exact nearest rank: the 11th of 21
            assert day.steps["login"].max == 117
            assert "idle" not in day.steps  # skipped steps are not timed

            before = await store.stats(monitor.id, NOW - dt.timedelta(days=365), NOW)
            # Every run but those of the last two hours (not settled: 4 of them) is folded
            # into hours and days; the 40- and 200-day-old runs are then dropped.
            assert await store.roll_up(NOW) == 65 - 4
            assert await store.roll_up(NOW) == 0  # nothing twice
            year = await store.stats(monitor.id, NOW - dt.timedelta(days=365), NOW)
            assert (year.runs, year.failures, year.uptime) == (before.runs, before.failures,
                                                               before.uptime) == (
                62, 8, round(100 * 54 / 62, 3))  # fmt: skip
            assert year.codes["DNS_NXDOMAIN"] == 1
            assert year.codes["AUTH_FAILED"] == 6
            # Rolled-up times are known by bucket: the percentile is a bucket's upper bound,
            # never above the largest time seen.
            assert year.steps["login"].max == 5000
            assert year.steps["login"].p99 == 5000
            assert year.steps["login"].p50 in BUCKETS_MS
            assert (await uptime(30))[0] == 31  # the raw month is untouched
            # Runs imported into hours already rolled up are added to the roll-ups too.
            await store.import_runs(monitor.id, [run(100 * 24, "fail", code="TCP_TIMEOUT")])
            year = await store.stats(monitor.id, NOW - dt.timedelta(days=365), NOW)
            assert (year.runs, year.failures, year.codes["TCP_TIMEOUT"]) == (63, 9, 2)

            # A year and a month later the roll-ups are gone too.
            # Later the rest is folded (the 4 recent runs, and the one imported above, whose
            # hour was rolled up already: it is not folded twice) and everything is dropped.
            assert await store.roll_up(NOW + dt.timedelta(days=400)) == 4
            gone = await store.stats(monitor.id, NOW - dt.timedelta(days=1000),
                                     NOW + dt.timedelta(days=1))  # fmt: skip
            assert gone.runs == 0
            assert gone.uptime is None
        finally:
            await store.close()

    asyncio.run(main())


def test_an_incident_s_events_wake_their_waiters_even_when_notices_are_queued(
    tmp_path: Path,
) -> None:
    """Opening and resolving an incident writes an event; the store's pulse must fire at the
    commit (the event stream and webhooks wake on it), also when the notices queued in the same
    transaction flushed the session (once missed: the webhook was then up to a poll late)."""

    async def main() -> None:
        store = await Store.open(tmp_path)
        try:
            hook = await store.add_channel("hook", "webhook", "http://127.0.0.1:9/", "127.0.0.1")
            spec = MonitorSpec("m", host="localhost", channels=(hook.id,))
            monitor = await store.add_monitor(spec, now=NOW)
            fired: list[int] = []
            pulse = store.events_written.fire

            def counted() -> None:
                fired.append(1)
                pulse()

            store.events_written.fire = counted  # type: ignore[method-assign]
            for down, kind in ((True, "incident.opened"), (False, "incident.resolved")):
                (job,) = await store.claim_jobs("w", [RUN_JOB], now=NOW, hold=60)
                outgoing = [Outgoing(kind, False, {"title": kind, "body": "", "data": {}})]
                alert = {"down": down, "code": "AUTH_FAILED" if down else None}
                assert await store.finish_run(
                    job.id, "w", monitor.id, run(0, "fail"), alert=alert, outgoing=outgoing,
                    next_run=NOW,
                )  # fmt: skip
                assert fired == [1], kind
                fired.clear()
                kinds = [e.kind for e in await store.events(limit=10)]
                assert kinds[-1] == kind
        finally:
            await store.close()

    asyncio.run(main())
