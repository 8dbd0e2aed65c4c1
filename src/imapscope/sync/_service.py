"""Many accounts in one process: a supervisor task per account, kept in step with the store.

The store is the source of truth. :meth:`SyncService.reconcile` compares each account's
revision (bumped by every edit, pause and resume) with the running supervisors and starts,
restarts or stops them; the service runs it every few seconds, so a change made by another
process (``imapscope accounts add`` while ``serve`` runs) takes effect by itself, and calls it
at once after a change made through its own API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Set
from pathlib import Path
from typing import Any

from imapscope.net import shrink_tls_read_buffers
from imapscope.probe import Report, run_check
from imapscope.store import (
    AccountQuery,
    AccountSpec,
    AccountView,
    Fence,
    Store,
    StoreError,
    Summary,
)
from imapscope.sync._engine import AccountSync, NewMailHook, SyncOptions, check_options
from imapscope.sync._local import LocalWorkers

log = logging.getLogger("imapscope.serve")

HEALTH_WINDOW = dt.timedelta(hours=1)
FAILING_STATES = frozenset({"auth_error", "connect_error", "backoff", "disabled"})


class VerifyError(StoreError):
    """Verify-before-save found errors; the report says which. Save anyway with ``force``."""

    def __init__(self, report: Report) -> None:
        top = report.headline
        super().__init__(
            f"verification failed: {report.verdict}"
            + (f" Fix: {top.fix}" if top is not None else "")
            + " (save anyway with force)"
        )
        self.report = report


def health(
    state: str,
    recent_errors: int,
    last_error: dt.datetime | None = None,
    last_sync: dt.datetime | None = None,
) -> str:
    """ok / degraded / failing. failing: in a failure state, or retrying with no successful
    sync since the latest error; degraded: working, with errors within :data:`HEALTH_WINDOW`;
    ok: no recent errors."""
    if state in FAILING_STATES:
        return "failing"
    if (
        last_error is not None
        and state != "paused"
        and (last_sync is None or last_sync < last_error)
    ):
        return "failing"
    return "degraded" if recent_errors else "ok"


@dataclasses.dataclass
class _Running:
    sync: AccountSync
    task: asyncio.Task[None]
    revision: int
    epoch: int = 0


class SyncService:
    """Start with :meth:`start`, stop with :meth:`stop` (cancels every supervisor)."""

    def __init__(
        self,
        store: Store,
        options: SyncOptions | None = None,
        *,
        reconcile_every: float = 2.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        local_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.options = options or SyncOptions()
        self.reconcile_every = reconcile_every
        self._running: dict[int, _Running] = {}
        self.gate = asyncio.Semaphore(self.options.connecting)
        self._loop_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.ready = False
        # This worker, among those sharing the database; the accounts it holds (id -> epoch).
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.owned: dict[int, int] = {}
        self.clock = clock
        self._beat_at = 0.0
        self._first_beat: dt.datetime | None = None
        self._known: set[int] = set()
        self.started = False
        # The workers of this machine (a shared directory): one that is gone (kill -9, a crash)
        # loses its leases at once rather than after the lease time (see _local).
        self.local = LocalWorkers(local_dir, self.worker_id) if local_dir is not None else None
        # Judges new mail against waiting expectations (the receive API installs it).
        self.on_new_mail: NewMailHook | None = None

    async def start(self) -> None:
        shrink_tls_read_buffers()  # one TLS connection per account: see its docstring
        self.started = True
        if self.local is not None:
            self.local.claim()
            gone = self.local.gone()
            if gone:
                await self.store.expire_workers(gone, self.clock())
                log.info("took over at once the leases of ended workers %s", ", ".join(gone))
        await self.heartbeat()
        await self.reconcile()
        self.ready = True
        self._loop_task = asyncio.create_task(self._reconcile_loop(), name="reconcile")

    async def stop(self) -> None:
        self.ready = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # All at once: each supervisor may take a moment to close its connection, and a
        # thousand of them one after the other would hold up shutdown for minutes.
        await asyncio.gather(*(self._stop_one(a) for a in list(self._running)))
        # Hand the leases back at once: the other workers take the accounts over at their
        # next heartbeat instead of after the lease time.
        with contextlib.suppress(Exception):
            await self.store.release_leases(self.worker_id)
        if self.local is not None:
            self.local.release()

    async def heartbeat(self) -> None:
        """Renew and balance this worker's leases (see :mod:`imapscope.store._leases`)."""
        now = self.clock()
        self._first_beat = self._first_beat or now
        # Workers started together share from the start; after a lease time, only the live
        # ones count (one that never came up must not leave accounts unsynced).
        young = (now - self._first_beat).total_seconds() < self.options.lease_ttl
        self.owned = await self.store.heartbeat(
            self.worker_id, host=socket.gethostname(), pid=os.getpid(), now=now,
            ttl=self.options.lease_ttl,
            at_least=self.options.started_together if young else 1,
        )  # fmt: skip
        self._beat_at = time.monotonic()
        self._known = set(await self.store.revisions())

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_every)
            try:
                if time.monotonic() - self._beat_at >= self.options.lease_ttl / 3:
                    await self.heartbeat()
                await self.reconcile()
            except Exception:  # the loop must outlive a passing database error
                log.exception("reconcile failed; trying again in %ss", self.reconcile_every)

    async def reconcile(self) -> None:
        """Run a supervisor for every account this worker holds the lease of, under that lease;
        stop the others. A service that was not started (the CLI uses one to verify and add an
        account) syncs nothing and takes no lease."""
        if not self.started:
            return
        async with self._lock:
            every = await self.store.revisions()
            if set(every) - self._known:  # a new account: claim it now, not at the next beat
                await self.heartbeat()
            revisions = {a: r for a, r in every.items() if a in self.owned}
            for account_id in [a for a in self._running if a not in revisions]:
                await self._stop_one(account_id)
            for account_id, revision in revisions.items():
                running = self._running.get(account_id)
                if running is not None:
                    if (running.revision == revision and not running.task.done()
                            and running.epoch == self.owned[account_id]):  # fmt: skip
                        continue
                    # Changed (edited, paused, resumed), its supervisor died of a bug (the
                    # exception is logged) or lost its lease: start it over.
                    await self._stop_one(account_id)
                sync = self.supervisor(account_id)
                task = asyncio.create_task(sync.run(), name=f"account-{account_id}")
                self._running[account_id] = _Running(sync, task, revision, self.owned[account_id])
            if self.on_new_mail is not None:
                # Folders other than INBOX that expectations (registered through any worker)
                # watch: the account's supervisor polls them while they do.
                watched = await self.store.watched_folders()
                for account_id, running in self._running.items():
                    self._watch(running.sync, watched.get(account_id, set()))

    def supervisor(self, account_id: int) -> AccountSync:
        """The supervisor for one account, under this worker's lease (tests put a faulty one
        here)."""
        fence = Fence(self.worker_id, self.owned[account_id])
        sync = AccountSync(self.store, account_id, self.options, fence, self.gate)
        sync.on_new_mail = self.on_new_mail
        return sync

    def watch(self, account_id: int, folders: Set[str]) -> None:
        """Have the account's supervisor, if this worker runs it, poll ``folders`` (beyond
        INBOX) from now on; other workers learn of it at their next reconcile."""
        running = self._running.get(account_id)
        if running is not None:
            self._watch(running.sync, running.sync.watch | folders)

    @staticmethod
    def _watch(sync: AccountSync, folders: Set[str]) -> None:
        wanted = frozenset(folders) - {"INBOX"}
        if wanted != sync.watch:
            added = wanted - sync.watch
            sync.watch = wanted
            if added:
                sync.wake()  # sync them now, not at the end of the IDLE round

    async def _stop_one(self, account_id: int) -> None:
        running = self._running.pop(account_id)
        running.task.cancel()
        # asyncio.wait, not await: the supervisor's CancelledError must not be mistaken for
        # (or swallow) a cancellation of the caller itself.
        await asyncio.wait([running.task])
        if not running.task.cancelled() and running.task.exception() is not None:
            log.error(
                "the supervisor of account %s failed", account_id,
                exc_info=running.task.exception(),
            )  # fmt: skip

    def runner(self, account_id: int) -> AccountSync | None:
        running = self._running.get(account_id)
        return running.sync if running else None

    # -- changes -----------------------------------------------------------------------------

    async def verify(self, spec: AccountSpec, secret: str, report: Report | None = None) -> Report:
        """Run the check ladder with these settings (before they are saved)."""
        spec.validate()
        return await run_check(check_options(spec, secret, self.options), report)

    async def _verified(self, spec: AccountSpec, secret: str, verify: bool, force: bool) -> None:
        if verify:
            report = await self.verify(spec, secret)
            if report.status == "critical" and not force:
                raise VerifyError(report)

    async def add(
        self, spec: AccountSpec, secret: str, *, verify: bool = True, force: bool = False
    ) -> AccountView:
        spec.validate()
        if not secret:
            raise StoreError("the password (or token) is empty")
        await self._verified(spec, secret, verify, force)
        account = await self.store.add_account(spec, secret)
        await self.reconcile()
        return account

    async def update(
        self, account_id: int, spec: AccountSpec, secret: str | None = None, *,
        verify: bool = True, force: bool = False,
    ) -> AccountView:  # fmt: skip
        spec.validate()
        if verify:
            await self._verified(spec, secret or await self.store.secret(account_id), True, force)
        account = await self.store.update_account(account_id, spec, secret)
        await self.reconcile()
        return account

    async def pause(self, account_id: int, paused: bool = True) -> AccountView:
        account = await self.store.set_paused(account_id, paused)
        await self.reconcile()
        return account

    async def remove(self, account_id: int) -> None:
        await self.store.account(account_id)  # a clear error when there is no such account
        async with self._lock:
            if account_id in self._running:
                await self._stop_one(account_id)
            await self.store.remove_account(account_id)

    # -- what the UI and API show ------------------------------------------------------------

    async def status(self, account: AccountView) -> dict[str, Any]:
        """The sync modal's left side: state and since when, last sync, next attempt (or why
        none is scheduled: ``halted``), progress, counts (folders, messages, kept errors) and
        health."""
        since = dt.datetime.now(dt.UTC) - HEALTH_WINDOW
        summary = (await self.store.summaries(since, [account.id]))[account.id]
        return self._status(account, summary)

    def _status(self, account: AccountView, summary: Summary) -> dict[str, Any]:
        sync = self.runner(account.id)
        return {
            "state": account.state,
            "state_since": account.state_since.isoformat(),
            "health": health(
                account.state, summary.recent_errors, summary.last_error, account.last_sync
            ),
            "errors_last_hour": summary.recent_errors,
            "last_sync": account.last_sync.isoformat() if account.last_sync else None,
            "next_attempt": account.next_attempt.isoformat() if account.next_attempt else None,
            "halted": account.halted,
            "connected_since": (
                sync.connected_since.isoformat() if sync and sync.connected_since else None
            ),
            "progress": dict(sync.progress) if sync else {},
            "folders": summary.folders,
            "messages": summary.messages,
            "errors": summary.errors,
        }

    async def overview(
        self, query: AccountQuery | None = None
    ) -> list[tuple[AccountView, dict[str, Any]]]:
        """Every account (or the page and filter ``query`` asks for) with its :meth:`status`:
        the accounts page, API list and CLI list. Three queries whatever the number of
        accounts; for a page, the counts are taken for its accounts only."""
        accounts = await self.store.accounts(query)
        return await self._with_status(accounts, paged=query is not None and bool(query.limit))

    async def overview_page(
        self, query: AccountQuery
    ) -> tuple[list[tuple[AccountView, dict[str, Any]]], int | None]:
        """One page of :meth:`overview` (``query.limit`` accounts) and the id the next page
        starts after (None: the last page): the API's list and the accounts page."""
        accounts, following = await self.store.account_page(query)
        return await self._with_status(accounts, paged=True), following

    async def _with_status(
        self, accounts: list[AccountView], *, paged: bool
    ) -> list[tuple[AccountView, dict[str, Any]]]:
        """Each account with its status; for a page, the counts of its accounts only."""
        since = dt.datetime.now(dt.UTC) - HEALTH_WINDOW
        summaries = await self.store.summaries(since, [a.id for a in accounts] if paged else None)
        return [(a, self._status(a, summaries.get(a.id, Summary()))) for a in accounts]
