"""Workers and account leases: which ``serve`` process syncs which account.

Theory of operation
-------------------
Each worker heartbeats (its ``workers`` row) and, in the same transaction, renews the leases it
holds, gives back those above its fair share (accounts / live workers, rounded up), and claims
free or expired ones up to it. A claim is a conditional UPDATE (the lease must still be free or
expired), so two workers never both win one; each claim raises the lease's ``epoch``. Every
write the sync engine makes for an account carries the (owner, epoch) it was started with
(:class:`Fence`) and is refused (:class:`LeaseLostError`) once the lease moved on: a worker that
was paused past its lease wakes up unable to write. The database is the only coordinator.

Times come from the caller (an injectable clock), so tests need no sleeping.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, literal, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from imapscope.store._db import Database
from imapscope.store._errors import StoreError
from imapscope.store._models import Account, Job, Lease, WebhookDelivery, Worker


class LeaseLostError(StoreError):
    """This worker no longer holds the account's lease: another one syncs it now."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a write is made under."""

    owner: str
    epoch: int


async def check_fence(s: Any, account_id: int, fence: Fence | None, now: dt.datetime) -> None:
    """Inside a write transaction: refuse it unless the account's lease still has this owner
    and epoch (a takeover raises the epoch; an expired lease nobody took yet is still ours to
    write under, since nobody else syncs the account). The lease row is locked (PostgreSQL)
    until the write commits, so a takeover waits for it."""
    del now  # the epoch is the fencing token; time is the heartbeat's business
    if fence is not None and await lost_fences(s, [(account_id, fence)]):
        raise lease_lost(account_id, fence)


async def lost_fences(s: Any, fenced: Sequence[tuple[int, Fence]]) -> set[tuple[int, Fence]]:
    """Inside a write transaction: which of these (account, fence) pairs no longer hold the
    account's lease (see :func:`check_fence`); the lease rows are locked, in account order."""
    if not fenced:
        return set()
    held = {
        (account_id, Fence(owner, epoch))
        for account_id, owner, epoch in await s.execute(
            _LEASES_OF, {"ids": sorted({a for a, _ in fenced})}
        )
    }
    return {pair for pair in fenced if pair not in held}


# Built once: building a statement and its cache key at each call cost more than running it.
_LEASES_OF = (
    select(Lease.account_id, Lease.owner, Lease.epoch)
    .where(Lease.account_id.in_(bindparam("ids", expanding=True)))
    .order_by(Lease.account_id)
    .with_for_update()
)


def lease_lost(account_id: int, fence: Fence) -> LeaseLostError:
    return LeaseLostError(
        f"account {account_id}: the lease (epoch {fence.epoch}) is no longer held by "
        f"{fence.owner}; another worker syncs it"
    )


class LeasesMixin(Database):
    async def heartbeat(
        self, worker: str, *, host: str, pid: int, now: dt.datetime, ttl: float,
        at_least: int = 1,
    ) -> dict[int, int]:  # fmt: skip
        """Say this worker is alive, renew its leases, balance them; the leases it holds now
        (account id -> epoch). ``at_least``: the workers to share with even if fewer are alive
        yet (workers started together, in their first moments)."""
        expires = now + dt.timedelta(seconds=ttl)
        alive_since = now - dt.timedelta(seconds=ttl)
        async with self._session() as s:
            found = await s.get(Worker, worker)
            if found is None:
                s.add(Worker(id=worker, host=host, pid=pid, started=now, heartbeat=now))
            else:
                found.heartbeat = now
            # Every account has a lease row (new accounts start free). Several workers may add
            # the same rows at once: the ones already there are left alone.
            await s.execute(_free_leases(self.dialect))
            await s.execute(update(Lease).where(Lease.owner == worker).values(expires=expires))
            accounts = int(await s.scalar(select(func.count()).select_from(Lease)) or 0)
            workers = int(await s.scalar(
                select(func.count()).select_from(Worker).where(Worker.heartbeat > alive_since)
            ) or 1)  # fmt: skip
            share = math.ceil(accounts / max(1, workers, at_least))
            mine = list(await s.scalars(
                select(Lease.account_id).where(Lease.owner == worker).order_by(Lease.account_id)
            ))  # fmt: skip
            if len(mine) > share:  # a worker joined: hand the surplus back
                surplus = mine[share:]
                await s.execute(
                    update(Lease).where(Lease.account_id.in_(surplus), Lease.owner == worker)
                    .values(owner=None, expires=None)
                )  # fmt: skip
            elif len(mine) < share:
                free = list(await s.scalars(
                    select(Lease.account_id)
                    .where((Lease.owner.is_(None)) | (Lease.expires <= now))
                    .order_by(Lease.account_id).limit(share - len(mine))
                ))  # fmt: skip
                # Each still free or expired when claimed (another worker may have been
                # quicker): the conditional UPDATE decides, in one statement per 5,000.
                for start in range(0, len(free), 5000):
                    await s.execute(
                        update(Lease)
                        .where(Lease.account_id.in_(free[start : start + 5000]),
                               (Lease.owner.is_(None)) | (Lease.expires <= now))
                        .values(owner=worker, epoch=Lease.epoch + 1, expires=expires)
                    )  # fmt: skip
            await s.commit()
            rows = await s.execute(
                select(Lease.account_id, Lease.epoch).where(Lease.owner == worker)
            )
            return {int(a): int(e) for a, e in rows}

    async def release_leases(self, worker: str) -> None:
        """Give every lease back at once (a clean stop), and forget the worker."""
        async with self._session() as s:
            await s.execute(
                update(Lease).where(Lease.owner == worker).values(owner=None, expires=None)
            )
            await s.execute(delete(Worker).where(Worker.id == worker))
            await s.commit()

    async def expire_workers(self, workers: list[str], now: dt.datetime) -> None:
        """Workers known to have ended (see :mod:`imapscope.sync._local`): their leases are free
        to claim now (a claim raises the epoch, which fences any late write of theirs), and so
        is the work they had claimed (jobs, webhook deliveries): it is tried again at once."""
        async with self._session() as s:
            await s.execute(update(Lease).where(Lease.owner.in_(workers)).values(expires=now))
            for claimed in (Job, WebhookDelivery):
                await s.execute(
                    update(claimed).where(claimed.claimed_by.in_(workers))
                    .values(claimed_until=now)
                    .execution_options(synchronize_session=False)
                )  # fmt: skip
            await s.execute(delete(Worker).where(Worker.id.in_(workers)))
            await s.commit()

    async def lease_owners(self) -> dict[int, str | None]:
        """Every account's lease owner (for status pages and tests)."""
        async with self._session() as s:
            return {int(a): o for a, o in await s.execute(select(Lease.account_id, Lease.owner))}


def _free_leases(dialect: str) -> Any:
    """A free lease row (epoch 0) for every account without one; rows already there (another
    worker adding them at the same moment) are left alone."""
    if dialect == "postgresql":
        # Imported here: SQLAlchemy's PostgreSQL dialect costs ~18 ms of each start on SQLite.
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415

        statement: Any = pg_insert(Lease)
    else:
        statement = sqlite_insert(Lease)
    rows = select(Account.id, literal(0)).where(Account.id.not_in(select(Lease.account_id)))
    return statement.from_select(["account_id", "epoch"], rows).on_conflict_do_nothing()
