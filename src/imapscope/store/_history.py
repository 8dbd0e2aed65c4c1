"""Monitor history over time: raw runs for :data:`RAW_KEPT`, and roll-ups by hour and by day
for :data:`HOURS_KEPT`, so that a year's uptime and latency can be shown, and read fast.

Theory of operation
-------------------
The hourly ``history.rollup`` job folds every hour that ended more than :data:`SETTLE` ago
(a run is recorded when it ends, and a round trip may wait up to an hour) into one row per
monitor and hour, then every complete day of hours into one row per monitor and day; two
watermarks in ``settings`` say how far each has got, so nothing is folded twice. Raw runs older
than :data:`RAW_KEPT` are then deleted (never before they are folded), and roll-ups older than
:data:`HOURS_KEPT`. A roll-up is one transaction, and runs imported into the past
(:meth:`HistoryMixin.import_runs`) wait for it or it for them.

A roll-up keeps its counts (runs outside maintenance, failures, runs in maintenance, headline
codes) and, per step, p50/p95/max and a latency histogram over :data:`BUCKETS_MS`.

:meth:`HistoryMixin.stats` over ``[since, until)`` reads raw runs only while they reach back to
``since`` (exact percentiles); a longer period reads days, the hours at its ends, and the raw
runs after the hours' watermark, and takes its percentiles from the merged histograms (the
upper bound of the bucket the rank falls in, never above the largest time seen). Such a period
counts whole hours at its start.

Uptime is ``(runs - failures) / runs`` over the runs outside maintenance windows: a warning
counts as up, a run in maintenance counts neither way.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select, text

from imapscope.store._db import Database
from imapscope.store._models import (
    Job,
    MonitorDay,
    MonitorHour,
    MonitorRun,
    Notification,
    Setting,
)

if TYPE_CHECKING:
    from imapscope.store._monitors import RunRecord

RAW_KEPT = dt.timedelta(days=30)
HOURS_KEPT = dt.timedelta(days=400)
#: An hour is folded this long after it ended: runs are recorded when they end.
SETTLE = dt.timedelta(hours=2)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
#: The settings that say how far the roll-ups have got (ISO 8601 times).
HOURS_DONE, DAYS_DONE, RAW_FROM = "rolled_hours_until", "rolled_days_until", "raw_runs_from"
#: Finished jobs (sent notifications) and notifications are kept this long for their logs.
DONE_JOBS_KEPT = dt.timedelta(days=1)
NOTIFICATIONS_KEPT = dt.timedelta(days=90)
#: Upper bounds (ms) of the latency histogram's buckets; one more bucket holds the rest.
BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000,
              1500, 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000, 120000)  # fmt: skip
ROLLUP_BATCH = 20_000
#: Hours of raw runs folded in one transaction.
ROLLUP_SPAN = dt.timedelta(hours=6)
#: PostgreSQL advisory lock key that keeps roll-ups and imports apart ("imap" in ASCII).
HISTORY_LOCK = 0x696D6170
TOTAL = "total"


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def day_of(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


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
        self._merged: list[int] | None = None  # buckets with the exact values binned too

    def add(self, ms: float) -> None:
        self.values.append(ms)
        self.largest = max(self.largest, ms)
        self._merged = None

    def add_histogram(self, histogram: dict[str, int], largest: float) -> None:
        buckets = self.buckets
        for index, count in histogram.items():
            buckets[int(index)] += count
        self.binned += sum(histogram.values())
        self.largest = max(self.largest, largest)
        self._merged = None

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
        if self._merged is None:
            self._merged = list(self.buckets)
            for ms in self.values:
                self._merged[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        buckets = self._merged
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


class _Tally:
    """Counts, codes and step times of a period, added up from raw runs and roll-ups."""

    def __init__(self) -> None:
        self.runs = self.failures = self.maintenance = 0
        self.times: dict[str, Latencies] = defaultdict(Latencies)
        self.codes: Counter[str] = Counter()

    def add_run(self, status: str, in_maintenance: bool, total_ms: float, steps: list[Any],
                code: str | None) -> None:  # fmt: skip
        if in_maintenance:
            self.maintenance += 1
            return
        self.runs += 1
        self.failures += status == "fail"
        if code:
            self.codes[code] += 1
        for name, ms in _timed(steps, total_ms):
            self.times[name].add(ms)

    def add_rollup(self, runs: int, failures: int, maintenance: int, steps: dict[str, Any],
                   codes: dict[str, int]) -> None:  # fmt: skip
        self.runs, self.failures = self.runs + runs, self.failures + failures
        self.maintenance += maintenance
        for name, step in steps.items():
            self.times[name].add_histogram(step["h"], step["max"])
        self.codes.update(codes)

    def rollup(self) -> dict[str, Any]:
        """The columns of a roll-up row with these figures."""
        return {
            "runs": self.runs, "failures": self.failures, "maintenance": self.maintenance,
            "codes": dict(self.codes),
            "steps": {name: {"n": t.n, "p50": t.percentile(50), "p95": t.percentile(95),
                             "max": round(t.largest, 1), "h": t.histogram()}
                      for name, t in self.times.items()},
        }  # fmt: skip

    def stats(self, since: dt.datetime, until: dt.datetime) -> Stats:
        uptime = round(100 * (self.runs - self.failures) / self.runs, 3) if self.runs else None
        return Stats(since, until, self.runs, self.failures, self.maintenance, uptime,
                     {name: t.stats() for name, t in sorted(self.times.items())},
                     dict(self.codes.most_common()))  # fmt: skip


_ROLLUP_COLUMNS = ("runs", "failures", "maintenance", "steps", "codes")


class HistoryMixin(Database):
    async def _mark(self, s: Any, name: str) -> dt.datetime | None:
        found = await self._setting(s, name)
        return None if found is None else dt.datetime.fromisoformat(found.decode())

    async def _set_mark(self, s: Any, name: str, value: dt.datetime) -> None:
        await self._put_setting(s, name, value.isoformat().encode())

    async def stats(self, monitor_id: int, since: dt.datetime, until: dt.datetime) -> Stats:
        """Uptime, codes and per-step percentiles over ``[since, until)`` (see the module's
        docstring for what is read)."""
        return (await self.stats_of([monitor_id], since, until))[monitor_id]

    async def stats_of(
        self, monitor_ids: Sequence[int], since: dt.datetime, until: dt.datetime
    ) -> dict[int, Stats]:
        """:meth:`stats` of several monitors, in a handful of queries whatever their number."""
        tallies: dict[int, _Tally] = {m: _Tally() for m in monitor_ids}
        async with self._session() as s:
            marks = dict((await s.execute(
                select(Setting.name, Setting.value)
                .where(Setting.name.in_((RAW_FROM, HOURS_DONE, DAYS_DONE)))
            )).all())  # fmt: skip
            mark = {n: dt.datetime.fromisoformat(bytes(v).decode()) for n, v in marks.items()}
            raw_since = since
            if RAW_FROM in mark and since < mark[RAW_FROM]:  # beyond the raw runs: roll-ups
                hours_done = mark.get(HOURS_DONE, since)
                days_done = mark.get(DAYS_DONE, since)
                start, end = hour_of(since), max(hour_of(since), min(until, hours_done))
                first_day = min(day_of(start + DAY - dt.timedelta(microseconds=1)), end)
                last_day = max(first_day, min(day_of(end), days_done))
                spans: list[tuple[Any, Any, dt.datetime, dt.datetime]] = [
                         (MonitorHour, MonitorHour.hour, start, first_day),
                         (MonitorDay, MonitorDay.day, first_day, last_day),
                         (MonitorHour, MonitorHour.hour, last_day, end)]  # fmt: skip
                for table, column, low, high in spans:
                    if low >= high:
                        continue
                    rows = await s.execute(
                        select(table.monitor_id, *(getattr(table, c) for c in _ROLLUP_COLUMNS))
                        .where(table.monitor_id.in_(monitor_ids), column >= low, column < high)
                    )  # fmt: skip
                    for monitor_id, *rollup in rows:
                        tallies[monitor_id].add_rollup(*rollup)
                raw_since = end
            raw = await s.execute(
                select(MonitorRun.monitor_id, MonitorRun.status, MonitorRun.maintenance,
                       MonitorRun.total_ms, MonitorRun.steps, MonitorRun.code)
                .where(MonitorRun.monitor_id.in_(monitor_ids), MonitorRun.at >= raw_since,
                       MonitorRun.at < until)
            )  # fmt: skip
            for monitor_id, *run in raw:
                tallies[monitor_id].add_run(*run)
        return {m: tally.stats(since, until) for m, tally in tallies.items()}

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
                found[int(monitor_id)].append((at, status, code, bool(maintenance)))
        return dict(found)

    async def recent_runs(
        self, since: dt.datetime
    ) -> list[tuple[int, dt.datetime, str, str | None, bool, list[tuple[str, float]]]]:
        """Every monitor's runs since ``since``: (monitor, at, status, code, in maintenance,
        times of the steps that ran and the total), oldest first (for /metrics)."""
        async with self._session() as s:
            rows = await s.execute(
                select(MonitorRun.monitor_id, MonitorRun.at, MonitorRun.status, MonitorRun.code,
                       MonitorRun.maintenance, MonitorRun.total_ms, MonitorRun.steps)
                .where(MonitorRun.at >= since).order_by(MonitorRun.at)
            )  # fmt: skip
            return [
                (monitor_id, at, status, code, maintenance, _timed(steps, total_ms))
                for monitor_id, at, status, code, maintenance, total_ms, steps in rows
            ]

    async def import_runs(self, monitor_id: int, runs: Sequence[RunRecord]) -> None:
        """Write runs as they are, in bulk (history brought from elsewhere, and the tests and
        benchmarks that need a year of it); no incident or notification follows from them.
        Runs in hours (or days) already rolled up are added to those roll-ups as well."""
        rows = [
            {"monitor_id": monitor_id, "at": r.at, "status": r.status, "code": r.code,
             "summary": r.summary, "fix": r.fix, "evidence": list(r.evidence),
             "total_ms": r.total_ms, "steps": [list(step) for step in r.steps],
             "maintenance": r.maintenance, "late_ms": r.late_ms, "worker": r.worker}
            for r in runs
        ]  # fmt: skip
        async with self._session() as s:
            await self._exclusive(s)
            hours_done = await self._mark(s, HOURS_DONE)
            days_done = await self._mark(s, DAYS_DONE)
            hours: dict[dt.datetime, _Tally] = defaultdict(_Tally)
            days: dict[dt.datetime, _Tally] = defaultdict(_Tally)
            for r in runs:
                fields = (r.status, r.maintenance, r.total_ms, [list(x) for x in r.steps], r.code)
                if hours_done is not None and r.at < hours_done:
                    hours[hour_of(r.at)].add_run(*fields)
                if days_done is not None and r.at < days_done:
                    days[day_of(r.at)].add_run(*fields)
            for table, found in ((MonitorHour, hours), (MonitorDay, days)):
                for begins, tally in found.items():
                    await self._merge(s, table, monitor_id, begins, tally)
            for start in range(0, len(rows), ROLLUP_BATCH):
                await s.execute(insert(MonitorRun), rows[start : start + ROLLUP_BATCH])
            await s.commit()

    async def _merge(
        self, s: Any, table: Any, monitor_id: int, start: dt.datetime, tally: _Tally
    ) -> None:
        """Add a tally to a roll-up row (made when there is none)."""
        row = await s.get(table, (monitor_id, start))
        if row is None:
            key = "hour" if table is MonitorHour else "day"
            s.add(table(monitor_id=monitor_id, **{key: start}, **tally.rollup()))
            return
        tally.add_rollup(*(getattr(row, c) for c in _ROLLUP_COLUMNS))
        for column, value in tally.rollup().items():
            setattr(row, column, value)

    async def _exclusive(self, s: Any) -> None:
        """In the caller's transaction: wait until no other roll-up or import runs (one writer
        at a time on SQLite does it by itself; PostgreSQL takes an advisory lock), so a
        roll-up never decides while an import is half done, and drops nothing unfolded."""
        if self.dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HISTORY_LOCK})

    async def roll_up(self, now: dt.datetime) -> int:
        """Fold the settled hours into hourly roll-ups and the complete days into daily ones,
        then drop raw runs older than :data:`RAW_KEPT`, roll-ups older than
        :data:`HOURS_KEPT`, finished jobs and old notifications; in one transaction, apart from
        any import. How many runs it folded."""
        target = hour_of(now - SETTLE)
        folded = 0
        async with self._session() as s:
            await self._exclusive(s)
            done = await self._mark(s, HOURS_DONE)
            if done is None:  # the first roll-up: from the oldest run
                oldest = await s.scalar(select(func.min(MonitorRun.at)))
                done = min(hour_of(oldest), target) if oldest is not None else target
            while done < target:
                upto = min(target, done + ROLLUP_SPAN)
                rows = await s.execute(
                    select(MonitorRun.monitor_id, MonitorRun.at, MonitorRun.status,
                           MonitorRun.maintenance, MonitorRun.total_ms, MonitorRun.steps,
                           MonitorRun.code)
                    .where(MonitorRun.at >= done, MonitorRun.at < upto)
                )  # fmt: skip
                tallies: dict[tuple[int, dt.datetime], _Tally] = defaultdict(_Tally)
                for monitor_id, at, *run in rows:
                    tallies[monitor_id, hour_of(at)].add_run(*run)
                    folded += 1
                if tallies:
                    await s.execute(insert(MonitorHour), [
                        {"monitor_id": m, "hour": hour, **tally.rollup()}
                        for (m, hour), tally in tallies.items()
                    ])  # fmt: skip
                done = upto
            await self._set_mark(s, HOURS_DONE, done)
            days_done = await self._mark(s, DAYS_DONE)
            if days_done is None:
                oldest = await s.scalar(select(func.min(MonitorHour.hour)))
                days_done = day_of(oldest) if oldest is not None else day_of(done)
            while days_done + DAY <= done:
                hours = await s.execute(
                    select(MonitorHour.monitor_id, *(getattr(MonitorHour, c)
                                                     for c in _ROLLUP_COLUMNS))
                    .where(MonitorHour.hour >= days_done, MonitorHour.hour < days_done + DAY)
                )  # fmt: skip
                days: dict[int, _Tally] = defaultdict(_Tally)
                for monitor_id, *rollup in hours:
                    days[monitor_id].add_rollup(*rollup)
                if days:
                    await s.execute(insert(MonitorDay), [
                        {"monitor_id": m, "day": days_done, **tally.rollup()}
                        for m, tally in days.items()
                    ])  # fmt: skip
                days_done += DAY
            await self._set_mark(s, DAYS_DONE, days_done)
            cut = min(now - RAW_KEPT, done)  # only what is rolled up goes
            await s.execute(delete(MonitorRun).where(MonitorRun.at < cut))
            raw_from = await self._mark(s, RAW_FROM)
            if raw_from is None or raw_from < cut:
                await self._set_mark(s, RAW_FROM, cut)
            await s.execute(delete(MonitorHour).where(MonitorHour.hour < now - HOURS_KEPT))
            await s.execute(delete(MonitorDay).where(MonitorDay.day < now - HOURS_KEPT))
            await s.execute(delete(Job).where(Job.done < now - DONE_JOBS_KEPT))
            await s.execute(delete(Notification).where(
                Notification.created < now - NOTIFICATIONS_KEPT, Notification.status != "pending"
            ))  # fmt: skip
            await s.commit()
        return folded
