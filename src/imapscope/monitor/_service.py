"""Running monitors on schedule, once across workers, and sending what they raise.

Theory of operation
-------------------
Every due run and every notification is a job row (:mod:`imapscope.store._jobs`). Each worker's
loop claims due jobs (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; one writer at a time on SQLite),
so with several workers each job is taken by one. A ``monitor.run`` job runs the check ladder
(the very code ``imapscope check`` runs, so a monitor names a failure as ``check`` does) or a
round trip (:mod:`._roundtrip`), folds
the outcome into the incident engine (:mod:`._rules`), and in one transaction, under its claim,
records the run, the incident's change and the notifications, and puts itself back for the
next due time. A ``notify`` job sends one notification, and on failure comes back after the
next of :data:`~imapscope.store.NOTIFY_RETRIES`, then is marked failed (seen in the channel's
log, never dropped). A worker that dies mid-job loses its claim after :data:`CLAIM_HOLD` and
another worker runs the job.

The loop sleeps until the next job is due (at most :data:`POLL` seconds, so jobs added by
another worker are seen), and wakes at once when this worker queued one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable

from imapscope.monitor._channels import ChannelError, send
from imapscope.monitor._message import compose, test_message
from imapscope.monitor._report import build, file_name, period, render
from imapscope.monitor._roundtrip import RoundTrip
from imapscope.monitor._rules import AlertState, Rules, decide
from imapscope.probe import CheckOptions, Report, run_check
from imapscope.store import (
    NOTIFY_JOB,
    REPORT_JOB,
    RUN_JOB,
    JobView,
    MonitorView,
    NotFoundError,
    NotificationView,
    Outgoing,
    RunRecord,
    Store,
    next_report,
)
from imapscope.sync import HEALTH_WINDOW, SyncOptions, check_options, health

log = logging.getLogger("imapscope.monitor")

ROLLUP_JOB = "history.rollup"
ROLLUP_EVERY = dt.timedelta(hours=1)
#: How long a claimed job is this worker's: a check ladder ends well within it (each step has
#: its own deadline); past it, another worker takes the job over.
CLAIM_HOLD = 180.0
#: The longest the loop sleeps before looking for due jobs again.
POLL = 1.0
#: Runs and sends under way at once, per worker.
CONCURRENCY = 200
#: A job that failed for a reason of ours (a bug, the database away) is tried again after this.
RETRY_AFTER = dt.timedelta(seconds=60)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_due(due: dt.datetime, interval: int, now: dt.datetime) -> dt.datetime:
    """The next run after one due at ``due``: one interval on, keeping the monitor's phase
    (no drift accumulates); runs missed while nobody ran them are skipped, not made up."""
    step = dt.timedelta(seconds=interval)
    following = due + step
    if following <= now:
        following += step * math.ceil((now - following) / step)
        if following <= now:
            following += step
    return following


def outcome(report: Report, at: dt.datetime, *, late_ms: float = 0.0) -> RunRecord:
    """A check report as a run: failed when critical (or when nothing could run), with its
    headline finding (code, summary, fix, evidence) and each step's status and time."""
    top = report.headline
    status = {"ok": "ok", "warning": "warning"}.get(report.status, "fail")
    return RunRecord(
        at=at, status=status, code=top.code if top else None,
        summary=top.summary if top else "", fix=top.fix if top else "",
        evidence=tuple(top.evidence) if top else (), total_ms=round(report.total_ms, 1),
        steps=tuple((s.name, s.status, round(s.elapsed_ms, 1)) for s in report.steps),
        late_ms=round(late_ms, 1),
    )  # fmt: skip


class MonitorService:
    """Start with :meth:`start`, stop with :meth:`stop`. ``clock`` is injectable (tests)."""

    def __init__(
        self, store: Store, options: SyncOptions, worker_id: str, *,
        clock: Callable[[], dt.datetime] = _utcnow, public_url: str | None = None,
        concurrency: int = CONCURRENCY,
    ) -> None:  # fmt: skip
        self.store, self.options, self.worker_id = store, options, worker_id
        self.clock, self.public_url, self.concurrency = clock, public_url, concurrency
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._busy: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.store.enqueue(ROLLUP_JOB, {}, run_at=self.clock(), key=ROLLUP_JOB)
        self._loop_task = asyncio.create_task(self._loop(), name="monitors")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._busy) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Look for due jobs now (a monitor was added or asked to run)."""
        self._wake.set()

    async def _loop(self) -> None:
        kinds = (RUN_JOB, NOTIFY_JOB, ROLLUP_JOB, REPORT_JOB)
        while True:
            try:
                free = self.concurrency - len(self._busy)
                jobs = []
                if free > 0:
                    jobs = await self.store.claim_jobs(
                        self.worker_id, kinds, now=self.clock(), hold=CLAIM_HOLD,
                        limit=min(free, 50),
                    )  # fmt: skip
                for job in jobs:
                    task = asyncio.create_task(self._do(job), name=f"job-{job.id}")
                    self._busy.add(task)
                    task.add_done_callback(self._busy.discard)
                if jobs and len(jobs) == min(free, 50):
                    continue  # more may be due
                due = await self.store.next_job_at(kinds)
                pause = POLL if due is None else (due - self.clock()).total_seconds()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(POLL, pause))):
                        await self._wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a passing database error
                log.exception("the monitor loop failed; trying again in %ss", POLL)
                await asyncio.sleep(POLL)

    async def _do(self, job: JobView) -> None:
        try:
            if job.kind == RUN_JOB:
                await self.run(job)
            elif job.kind == NOTIFY_JOB:
                await self.deliver(job)
            elif job.kind == REPORT_JOB:
                await self.send_report(job)
            else:
                await self.store.roll_up(self.clock())
                await self.store.reschedule_job(
                    job.id, self.worker_id, run_at=self.clock() + ROLLUP_EVERY
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            with contextlib.suppress(Exception):
                await self.store.fail_job(
                    job.id, self.worker_id, error=f"{type(exc).__name__}: {exc}",
                    retry_at=self.clock() + RETRY_AFTER, now=self.clock(),
                )  # fmt: skip

    # -- runs ----------------------------------------------------------------------------------

    async def check_options(self, monitor: MonitorView) -> CheckOptions:
        """The check ladder's options for a monitor: a registered account's own settings, or
        the monitor's host and credentials."""
        spec = monitor.spec
        if spec.account_id is not None:
            account = await self.store.account(spec.account_id)
            chosen = check_options(account.spec, await self.store.secret(account.id), self.options)
        else:
            assert spec.host is not None
            secret = await self.store.monitor_secret(monitor.id)
            chosen = CheckOptions(
                host=spec.host, port=spec.port, security=spec.security, user=spec.username,
                password=secret, ca_file=self.options.ca_file, insecure=self.options.insecure,
                timeout=self.options.timeout,
            )  # fmt: skip
        chosen.write_tests = spec.write_tests
        return chosen

    async def run(self, job: JobView) -> None:
        """Run a due monitor and record what came of it (see the module's docstring)."""
        started = self.clock()
        try:
            monitor = await self.store.monitor(int(job.payload["monitor"]))
        except NotFoundError:  # removed: its job goes with it
            await self.store.drop_job(job.id, self.worker_id)
            return
        late_ms = max(0.0, (started - job.run_at).total_seconds() * 1000)
        if monitor.spec.kind == "roundtrip":

            async def hold(seconds: float) -> None:  # the receive leg may outlast the claim
                until = self.clock() + dt.timedelta(seconds=seconds)
                await self.store.extend_claim(job.id, self.worker_id, until=until)

            trip = RoundTrip(self.store, self.options, monitor, on_wait=hold)
            run = dataclasses.replace(await trip.run(started), late_ms=round(late_ms, 1))
        elif monitor.spec.kind == "sync":
            run = await self.sync_health(monitor, started, late_ms)
        else:
            report = await run_check(await self.check_options(monitor))
            run = outcome(report, started, late_ms=late_ms)
        maintenance = await self.store.in_maintenance(monitor.id, started)
        if maintenance:
            run = dataclasses.replace(run, maintenance=True)
        rules = Rules.of(await self.store.alert_defaults(), monitor.spec.rules)
        before = AlertState.from_json(monitor.alert)
        after, notices = decide(before, rules, ok=run.status != "fail", code=run.code,
                                now=started, maintenance=maintenance)  # fmt: skip
        opened = before.opened or after.opened
        outgoing = [
            Outgoing(n.kind, n.escalation, compose(
                monitor, n, run, opened=opened.isoformat() if opened else None,
                previous_code=before.code, public_url=self.public_url,
            ))
            for n in notices
        ]  # fmt: skip
        recorded = await self.store.finish_run(
            job.id, self.worker_id, monitor.id, run, alert=after.to_json(), outgoing=outgoing,
            next_run=next_due(job.run_at, monitor.spec.interval, self.clock()),
        )  # fmt: skip
        if not recorded:
            log.warning("monitor %s: the run's claim was lost; another worker runs it", monitor.id)
        elif outgoing:
            self.wake()  # the notifications are due now

    async def sync_health(self, monitor: MonitorView, at: dt.datetime, late_ms: float) -> RunRecord:
        """A ``sync`` monitor's run: the account's sync health as the sync engine left it (the
        same as the accounts page shows), named by its latest error's finding. Failing fails;
        degraded (errors within the hour, syncing again) is a warning; a paused account is ok."""
        assert monitor.spec.account_id is not None
        account = await self.store.account(monitor.spec.account_id)
        summary = (await self.store.summaries(at - HEALTH_WINDOW, [account.id]))[account.id]
        state = health(account.state, summary.recent_errors, summary.last_error, account.last_sync)
        status = {"failing": "fail", "degraded": "warning"}.get(state, "ok")
        latest = (await self.store.errors(account.id, limit=1)) if status != "ok" else []
        error = latest[0] if latest else None
        return RunRecord(
            at=at, status=status, code=error.code if error else None,
            summary=error.message if error else "", fix=error.fix if error else "",
            evidence=tuple(error.evidence) if error else (),
            steps=(("sync", {"ok": "pass", "warning": "warn"}.get(status, "fail"), 0.0),),
            late_ms=round(late_ms, 1),
        )  # fmt: skip

    # -- notifications -------------------------------------------------------------------------

    async def deliver(self, job: JobView) -> None:
        """Send one notification; on failure, schedule the next attempt (or give up)."""
        notification_id = int(job.payload["notification"])
        try:
            note, message = await self.store.notification(notification_id)
            channel = await self.store.channel(note.channel_id)
            url, secret = await self.store.channel_secrets(channel.id)
        except NotFoundError:  # its channel was removed
            await self.store.complete_job(job.id, self.worker_id, now=self.clock())
            return
        attachment = None
        if "report" in message:  # a scheduled report: made now, from the history
            wanted = message["report"]
            report = await build(
                self.store, dt.datetime.fromisoformat(wanted["start"]),
                dt.datetime.fromisoformat(wanted["end"]), now=note.created,
                monitor_ids=wanted["monitors"] or None,
            )  # fmt: skip
            attachment = (file_name(report, wanted["format"]), render(report, wanted["format"]))
            message = message | {"data": message["data"] | {"report": report}}
        try:
            await send(channel.kind, url, secret, message, message_id=f"msg_{notification_id}",
                       attachment=attachment)  # fmt: skip
        except ChannelError as exc:
            retry_at = await self.store.notification_failed(
                notification_id, job.id, self.worker_id, error=str(exc), now=self.clock(),
                attempt=job.attempts,
            )  # fmt: skip
            log.warning(
                "notification %s to channel %s failed (attempt %s): %s; %s", notification_id,
                channel.id, job.attempts, exc,
                f"next attempt at {retry_at.isoformat()}" if retry_at else "given up",
            )  # fmt: skip
            return
        await self.store.notification_sent(
            notification_id, job.id, self.worker_id, now=self.clock()
        )

    # -- scheduled reports ---------------------------------------------------------------------

    async def send_report(self, job: JobView) -> None:
        """Queue a schedule's report for its last full period to its channels (the file is
        made when each notification is sent), and put the job back for the next period."""
        now = self.clock()
        try:
            schedule = await self.store.report_schedule(int(job.payload["schedule"]))
        except NotFoundError:
            await self.store.drop_job(job.id, self.worker_id)
            return
        start, end = period(schedule.every, now)
        report = await build(self.store, start, end, now=now,
                             monitor_ids=list(schedule.monitors) or None)  # fmt: skip
        lines = [
            f"{m['name']}: "
            + ("no runs" if m["uptime"] is None else f"{m['uptime']:.3f} % up")
            + f", {len(m['incidents'])} incident(s)"
            for m in report["monitors"]
        ]
        message = {
            "type": "report.made",
            "title": f"imapscope report {schedule.name}: {start:%Y-%m-%d} to {end:%Y-%m-%d}",
            "body": "\n".join(lines) or "No monitors.",
            "data": {"kind": "report", "schedule": schedule.id, "start": report["start"],
                     "end": report["end"]},
            "report": {"start": report["start"], "end": report["end"],
                       "format": schedule.format, "monitors": list(schedule.monitors)},
        }  # fmt: skip
        await self.store.queue_for_job(
            job.id, self.worker_id, schedule.channels, "report", message, now=now,
            next_run=next_report(schedule.every, now),
        )  # fmt: skip
        self.wake()


async def send_test(store: Store, channel_id: int, *, public_url: str | None) -> NotificationView:
    """Send a test message to a channel now (not through the queue) and log it: the logged
    notification says whether it arrived, and why not."""
    channel = await store.channel(channel_id)
    url, secret = await store.channel_secrets(channel_id)
    message = test_message(channel.name, public_url)
    now = _utcnow()
    error = None
    try:
        await send(channel.kind, url, secret, message,
                   message_id=f"test_{channel_id}_{int(now.timestamp() * 1000)}")  # fmt: skip
    except ChannelError as exc:
        error = str(exc)
    return await store.log_notification(channel_id, "test", message, now=now, error=error)
