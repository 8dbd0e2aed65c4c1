"""Work that must happen once across workers (a scheduled check, a notification, a webhook
delivery): rows claimed from the ``jobs`` table.

A claim takes due, unclaimed jobs (or ones whose claim ran out: their worker died) and marks them
claimed by one worker until a deadline. On PostgreSQL the candidates are read ``FOR UPDATE SKIP
LOCKED``, so workers claiming at the same moment take different jobs without waiting on each
other; on SQLite one writer at a time does the same. A job is then completed, or failed with the
time of its next attempt. Whatever must survive a crash is written in the same transaction as the
change that caused it (``enqueue`` takes the caller's session for that).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from imapscope.store._bounds import bounded
from imapscope.store._db import Database
from imapscope.store._models import Job


@dataclass(frozen=True, slots=True)
class JobView:
    id: int
    kind: str
    key: str | None
    payload: dict[str, Any]
    run_at: dt.datetime
    attempts: int


def _view(row: Job) -> JobView:
    return JobView(row.id, row.kind, row.key, row.payload, row.run_at, row.attempts)


class JobsMixin(Database):
    async def enqueue(
        self, kind: str, payload: dict[str, Any], *, run_at: dt.datetime,
        key: str | None = None,
    ) -> int:  # fmt: skip
        """Add a job (a ``key`` makes it unique: the same key again returns the first job, also
        when another worker adds it at the same moment)."""
        async with self._session() as s:
            if key is not None:
                found = await s.scalar(select(Job.id).where(Job.key == key))
                if found is not None:
                    return int(found)
            row = Job(kind=kind, key=key, payload=payload, run_at=run_at)
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # another worker's, committed between our look and write
                await s.rollback()
                found = await s.scalar(select(Job.id).where(Job.key == key))
                if found is None:
                    raise
                return int(found)
            return row.id

    async def claim_jobs(
        self, worker: str, kinds: Sequence[str], *, now: dt.datetime, hold: float,
        limit: int = 10,
    ) -> list[JobView]:  # fmt: skip
        """Claim up to ``limit`` due jobs of these kinds for ``hold`` seconds."""
        async with self._session() as s:
            won = await claim_rows(
                s, Job, Job.kind.in_(kinds) & Job.done.is_(None) & (Job.run_at <= now),
                (Job.run_at, Job.id), worker=worker, now=now, hold=hold, limit=limit,
            )  # fmt: skip
            await s.commit()
            if not won:
                return []
            claimed = await s.scalars(
                select(Job).where(Job.id.in_(won)).order_by(Job.run_at, Job.id)
                .execution_options(populate_existing=True)  # the rows just updated, fresh
            )  # fmt: skip
            return [_view(r) for r in claimed]

    async def next_job_at(self, kinds: Sequence[str]) -> dt.datetime | None:
        """When the next unclaimed job of these kinds is due (None: there is none)."""
        async with self._session() as s:
            found = await s.scalar(
                select(func.min(Job.run_at))
                .where(Job.kind.in_(kinds), Job.done.is_(None), Job.claimed_by.is_(None))
            )  # fmt: skip
            return found

    async def reschedule_job(self, job_id: int, worker: str, *, run_at: dt.datetime) -> bool:
        """Give a claimed, recurring job back to be run again at ``run_at``."""
        async with self._session() as s:
            done = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker)
                .values(run_at=run_at, claimed_by=None, claimed_until=None, attempts=0)
            )  # fmt: skip
            await s.commit()
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def extend_claim(self, job_id: int, worker: str, *, until: dt.datetime) -> bool:
        """Keep a claimed job for longer (a run that waits, like a round trip's receive leg)."""
        async with self._session() as s:
            done = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker, Job.done.is_(None))
                .values(claimed_until=until)
            )  # fmt: skip
            await s.commit()
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def drop_job(self, job_id: int, worker: str) -> bool:
        """Delete a claimed job that has nothing left to do (its monitor or schedule is gone),
        so that its key is free again."""
        async with self._session() as s:
            done = await s.execute(delete(Job).where(Job.id == job_id, Job.claimed_by == worker))
            await s.commit()
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def complete_job(self, job_id: int, worker: str, *, now: dt.datetime) -> bool:
        """Mark a claimed job done; False when this worker's claim was lost meanwhile."""
        async with self._session() as s:
            done = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker, Job.done.is_(None))
                .values(done=now, claimed_until=None)
            )  # fmt: skip
            await s.commit()
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def fail_job(
        self, job_id: int, worker: str, *, error: str, retry_at: dt.datetime | None,
        now: dt.datetime,
    ) -> None:  # fmt: skip
        """Give a claimed job back to be tried again at ``retry_at`` (None: give up)."""
        async with self._session() as s:
            await give_back(s, job_id, worker, error=error, retry_at=retry_at, now=now)
            await s.commit()


async def give_back(
    s: Any, job_id: int, worker: str, *, error: str, retry_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:  # fmt: skip
    """In the caller's transaction: a claimed job back for ``retry_at`` (None: given up, done)
    with its error; False when this worker's claim had gone."""
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None,
                              "last_error": bounded(error, 2000)}  # fmt: skip
    if retry_at is None:
        values["done"] = now
    else:
        values["run_at"] = retry_at
    kept = await s.execute(
        update(Job).where(Job.id == job_id, Job.claimed_by == worker).values(**values)
    )
    return bool(kept.rowcount)


async def claim_rows(
    s: Any, model: Any, due: Any, order: tuple[Any, ...], *, worker: str, now: dt.datetime,
    hold: float, limit: int,
) -> list[int]:  # fmt: skip
    """In the caller's transaction: claim up to ``limit`` rows of ``model`` (a table with
    ``claimed_by``, ``claimed_until`` and ``attempts``) that are ``due`` and unclaimed (or whose
    claim ran out) for ``hold`` seconds; their ids. Jobs and webhook deliveries are claimed so."""
    until = now + dt.timedelta(seconds=hold)
    free = model.claimed_until.is_(None) | (model.claimed_until < now)
    ids = list(await s.scalars(
        select(model.id).where(due, free).order_by(*order).limit(limit)
        .with_for_update(skip_locked=True)
    ))  # fmt: skip
    if not ids:
        return []
    # Conditional: on SQLite (no SKIP LOCKED) another worker may have read the same candidates;
    # the UPDATE takes only those still unclaimed, and says which (RETURNING).
    won = await s.scalars(
        update(model).where(model.id.in_(ids), due, free)
        .values(claimed_by=worker, claimed_until=until, attempts=model.attempts + 1)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    return sorted(won, key=ids.index)
