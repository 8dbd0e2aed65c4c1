"""Monitor history over time: raw runs for :data:`RAW_KEPT`, then hourly roll-ups for
:data:`HOURS_KEPT`, so that a year's uptime and latency can be shown.

An hour's roll-up keeps its counts (runs outside maintenance, failures, runs in maintenance)
and, per step, p50/p95/max and a latency histogram over :data:`BUCKETS_MS`. Percentiles over
a period are exact while it lies within the raw runs; once it reaches into rolled-up hours
they are read from the merged histograms (the upper bound of the bucket the rank falls in,
never above the largest time seen), which is what a year's chart needs.

Uptime is ``(runs - failures) / runs`` over the runs outside maintenance windows: a warning
counts as up, a run in maintenance counts neither way. With roll-ups, a period that starts
within an hour counts that whole hour.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select

from imapscope.store._db import Database
from imapscope.store._models import Job, MonitorHour, MonitorRun, Notification
from imapscope.store._views import utc

if TYPE_CHECKING:
    from imapscope.store._monitors import RunRecord

RAW_KEPT = dt.timedelta(days=30)
HOURS_KEPT = dt.timedelta(days=400)
#: Finished jobs (sent notifications) and notifications are kept this long for their logs.
DONE_JOBS_KEPT = dt.timedelta(days=1)
NOTIFICATIONS_KEPT = dt.timedelta(days=90)
#: Upper bounds (ms) of the latency histogram's buckets; one more bucket holds the rest.
BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000,
              1500, 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000, 120000)  # fmt: skip
ROLLUP_BATCH = 20_000
TOTAL = "total"


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclasses.dataclass(frozen=True)
class StepStats:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


@dataclasses.dataclass(frozen=True)
class Stats:
    """One monitor over one period."""

    since: dt.datetime
    until: dt.datetime
    runs: int  # outside maintenance
    failures: int
    maintenance: int  # runs inside maintenance windows (not counted)
    uptime: float | None  # percent; None without runs
    steps: dict[str, StepStats]  # "total" and each step by name
    codes: dict[str, int]  # headline codes of the runs (outside maintenance), by how many


class Latencies:
    """Times of one step: exact while every time is known, a histogram once roll-ups join."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.buckets = [0] * (len(BUCKETS_MS) + 1)
        self.binned = 0  # times known only by bucket
        self.largest = 0.0

    def add(self, ms: float) -> None:
        self.values.append(ms)
        self.largest = max(self.largest, ms)

    def add_histogram(self, histogram: dict[str, int], largest: float) -> None:
        for index, count in histogram.items():
            self.buckets[int(index)] += count
            self.binned += count
        self.largest = max(self.largest, largest)

    @property
    def n(self) -> int:
        return len(self.values) + self.binned

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (nearest rank)."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q / 100 * self.n))
        if not self.binned:
            return round(sorted(self.values)[rank - 1], 1)
        buckets = list(self.buckets)
        for ms in self.values:
            buckets[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        seen = 0
        for index, count in enumerate(buckets):
            seen += count
            if seen >= rank:
                bound = BUCKETS_MS[index] if index < len(BUCKETS_MS) else self.largest
                return round(min(float(bound), self.largest), 1)
        return round(self.largest, 1)  # pragma: no cover - the ranks add up to n

    def stats(self) -> StepStats:
        return StepStats(self.n, self.percentile(50), self.percentile(95), self.percentile(99),
                         round(self.largest, 1) if self.n else None)  # fmt: skip

    def histogram(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for ms in self.values:
            found[str(bisect.bisect_left(BUCKETS_MS, ms))] += 1
        for index, count in enumerate(self.buckets):
            if count:
                found[str(index)] += count
        return dict(found)


def _timed(steps: list[Any], total_ms: float) -> list[tuple[str, float]]:
    """A run's times worth counting: each step that ran (not skipped), and the total."""
    return [(str(n), float(ms)) for n, status, ms in steps if status != "skip"] + [
        (TOTAL, float(total_ms))
    ]


class HistoryMixin(Database):
    async def stats(self, monitor_id: int, since: dt.datetime, until: dt.datetime) -> Stats:
        """Uptime and per-step percentiles over ``[since, until)``, from raw runs and roll-ups."""
        runs = failures = maintenance = 0
        times: dict[str, Latencies] = defaultdict(Latencies)
        codes: Counter[str] = Counter()
        async with self._session() as s:
            hours = await s.scalars(
                select(MonitorHour).where(
                    MonitorHour.monitor_id == monitor_id, MonitorHour.hour >= hour_of(since),
                    MonitorHour.hour < until,
                )
            )  # fmt: skip
            for hour in hours:
                runs, failures = runs + hour.runs, failures + hour.failures
                maintenance += hour.maintenance
                for name, step in hour.steps.items():
                    times[name].add_histogram(step["h"], step["max"])
                codes.update(hour.codes)
            raw = await s.execute(
                select(MonitorRun.status, MonitorRun.maintenance, MonitorRun.total_ms,
                       MonitorRun.steps, MonitorRun.code)
                .where(MonitorRun.monitor_id == monitor_id, MonitorRun.at >= since,
                       MonitorRun.at < until)
            )  # fmt: skip
            for status, in_maintenance, total_ms, steps, code in raw:
                if in_maintenance:
                    maintenance += 1
                    continue
                runs += 1
                failures += status == "fail"
                if code:
                    codes[code] += 1
                for name, ms in _timed(steps, total_ms):
                    times[name].add(ms)
        uptime = round(100 * (runs - failures) / runs, 3) if runs else None
        return Stats(since, until, runs, failures, maintenance, uptime,
                     {name: t.stats() for name, t in sorted(times.items())},
                     dict(codes.most_common()))  # fmt: skip

    async def uptimes(self, since: dt.datetime) -> dict[int, float | None]:
        """Every monitor's uptime % since ``since`` (raw runs: within :data:`RAW_KEPT`)."""
        async with self._session() as s:
            rows = await s.execute(
                select(MonitorRun.monitor_id, func.count(),
                       func.sum(case((MonitorRun.status == "fail", 1), else_=0)))
                .where(MonitorRun.at >= since, MonitorRun.maintenance.is_(False))
                .group_by(MonitorRun.monitor_id)
            )  # fmt: skip
            return {int(m): round(100 * (n - int(f or 0)) / n, 3) if n else None
                    for m, n, f in rows}  # fmt: skip

    async def latest_runs(
        self, per_monitor: int
    ) -> dict[int, list[tuple[dt.datetime, str, str | None, bool]]]:
        """Each monitor's newest runs (at, status, code, in maintenance), oldest first."""
        ranked = select(
            MonitorRun.monitor_id, MonitorRun.at, MonitorRun.status, MonitorRun.code,
            MonitorRun.maintenance,
            func.row_number().over(partition_by=MonitorRun.monitor_id,
                                   order_by=MonitorRun.at.desc()).label("rank"),
        ).subquery()  # fmt: skip
        found: dict[int, list[tuple[dt.datetime, str, str | None, bool]]] = defaultdict(list)
        async with self._session() as s:
            rows = await s.execute(
                select(ranked.c.monitor_id, ranked.c.at, ranked.c.status, ranked.c.code,
                       ranked.c.maintenance)
                .where(ranked.c.rank <= per_monitor).order_by(ranked.c.monitor_id, ranked.c.at)
            )  # fmt: skip
            for monitor_id, at, status, code, maintenance in rows:
                found[int(monitor_id)].append((utc(at), status, code, bool(maintenance)))
        return dict(found)

    async def recent_runs(
        self, since: dt.datetime
    ) -> list[tuple[int, dt.datetime, str, bool, list[tuple[str, float]]]]:
        """Every monitor's runs since ``since``: (monitor, at, status, in maintenance, times
        of the steps that ran and the total), oldest first (for /metrics)."""
        async with self._session() as s:
            rows = await s.execute(
                select(MonitorRun.monitor_id, MonitorRun.at, MonitorRun.status,
                       MonitorRun.maintenance, MonitorRun.total_ms, MonitorRun.steps)
                .where(MonitorRun.at >= since).order_by(MonitorRun.at)
            )  # fmt: skip
            return [
                (monitor_id, utc(at), status,
                 maintenance, _timed(steps, total_ms))
                for monitor_id, at, status, maintenance, total_ms, steps in rows
            ]  # fmt: skip

    async def import_runs(self, monitor_id: int, runs: Sequence[RunRecord]) -> None:
        """Write runs as they are, in bulk (history brought from elsewhere, and the tests and
        benchmarks that need a year of it); no incident or notification follows from them."""
        rows = [
            {"monitor_id": monitor_id, "at": r.at, "status": r.status, "code": r.code,
             "summary": r.summary, "fix": r.fix, "evidence": list(r.evidence),
             "total_ms": r.total_ms, "steps": [list(step) for step in r.steps],
             "maintenance": r.maintenance, "late_ms": r.late_ms, "worker": r.worker}
            for r in runs
        ]  # fmt: skip
        async with self._session() as s:
            for start in range(0, len(rows), ROLLUP_BATCH):
                await s.execute(insert(MonitorRun), rows[start : start + ROLLUP_BATCH])
            await s.commit()

    async def roll_up(self, now: dt.datetime) -> int:
        """Fold raw runs older than :data:`RAW_KEPT` into hourly roll-ups, drop roll-ups older
        than :data:`HOURS_KEPT`, finished jobs and old notifications. How many runs it folded."""
        cutoff = hour_of(now - RAW_KEPT)
        folded = 0
        while True:
            async with self._session() as s:
                rows = (await s.execute(
                    select(MonitorRun.id, MonitorRun.monitor_id, MonitorRun.at,
                           MonitorRun.status, MonitorRun.maintenance, MonitorRun.total_ms,
                           MonitorRun.steps, MonitorRun.code)
                    .where(MonitorRun.at < cutoff).order_by(MonitorRun.id).limit(ROLLUP_BATCH)
                )).all()  # fmt: skip
                if not rows:
                    break
                groups: dict[tuple[int, dt.datetime], list[Any]] = defaultdict(list)
                for row in rows:
                    groups[row[1], hour_of(utc(row[2]))].append(row)
                for (monitor_id, hour), members in groups.items():
                    await self._fold(s, monitor_id, hour, members)
                await s.execute(delete(MonitorRun).where(MonitorRun.id.in_([r[0] for r in rows])))
                await s.commit()
                folded += len(rows)
        async with self._session() as s:
            await s.execute(delete(MonitorHour).where(MonitorHour.hour < now - HOURS_KEPT))
            await s.execute(delete(Job).where(Job.done < now - DONE_JOBS_KEPT))
            await s.execute(delete(Notification).where(
                Notification.created < now - NOTIFICATIONS_KEPT, Notification.status != "pending"
            ))  # fmt: skip
            await s.commit()
        return folded

    async def _fold(self, s: Any, monitor_id: int, hour: dt.datetime, rows: list[Any]) -> None:
        row = await s.get(MonitorHour, (monitor_id, hour))
        if row is None:
            row = MonitorHour(monitor_id=monitor_id, hour=hour, runs=0, failures=0,
                              maintenance=0, steps={}, codes={})  # fmt: skip
            s.add(row)
        times: dict[str, Latencies] = defaultdict(Latencies)
        codes: Counter[str] = Counter(row.codes)
        for name, step in row.steps.items():
            times[name].add_histogram(step["h"], step["max"])
        runs, failures, maintenance = row.runs, row.failures, row.maintenance
        for _id, _monitor, _at, status, in_maintenance, total_ms, steps, code in rows:
            if in_maintenance:
                maintenance += 1
                continue
            runs += 1
            failures += status == "fail"
            if code:
                codes[code] += 1
            for name, ms in _timed(steps, total_ms):
                times[name].add(ms)
        row.runs, row.failures, row.maintenance = runs, failures, maintenance
        row.codes = dict(codes)
        row.steps = {
            name: {"n": t.n, "p50": t.percentile(50), "p95": t.percentile(95),
                   "max": round(t.largest, 1), "h": t.histogram()}
            for name, t in times.items()
        }  # fmt: skip
