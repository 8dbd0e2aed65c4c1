"""Several workers on one database: leases (fair share, takeover after expiry, fencing) and the
job table (each job claimed once), with an injected clock: no sleeping. Runs on SQLite and on
PostgreSQL (the ``database`` fixture)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from imapscope.store import AccountSpec, Fence, LeaseLostError, Store

pytestmark = pytest.mark.usefixtures("database")

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TTL = 30.0


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


async def open_with_accounts(path: Path, n: int) -> Store:
    store = await Store.open(path)
    for i in range(n):
        spec = AccountSpec(email=f"u{i}@example.test", host="127.0.0.1", port=9,
                           security="tls", username=f"u{i}")  # fmt: skip
        await store.add_account(spec, "pw-secret")
    return store


async def beat(store: Store, worker: str, seconds: float) -> dict[int, int]:
    return await store.heartbeat(worker, host="h", pid=1, now=at(seconds), ttl=TTL)


def test_leases_are_shared_taken_over_and_fenced(tmp_path: Path) -> None:
    async def main() -> None:
        store = await open_with_accounts(tmp_path, 10)
        other = await Store.open(tmp_path)  # a second worker: its own connections
        try:
            first = await beat(store, "w1", 0)
            assert sorted(first) == list(range(1, 11))  # alone: everything
            assert await beat(other, "w2", 1) == {}  # nothing free yet
            assert len(await beat(store, "w1", 10)) == 5  # w1 hands back the surplus
            second = await beat(other, "w2", 11)
            assert len(second) == 5
            assert set(second).isdisjoint(await beat(store, "w1", 12))
            # w1 dies (no more heartbeats): after its lease time w2 takes everything over,
            # each account under a new epoch.
            taken = await beat(other, "w2", 12 + TTL + 1)
            assert sorted(taken) == list(range(1, 11))
            lost = next(a for a in taken if a not in second)
            assert taken[lost] == first[lost] + 1
            # w1 wakes up: a write under its old lease is refused; w2's goes through.
            with pytest.raises(LeaseLostError, match="another worker syncs it"):
                await store.set_state(lost, "idle", fence=Fence("w1", first[lost]))
            assert (await store.account(lost)).state == "connecting"
            await other.set_state(lost, "idle", fence=Fence("w2", taken[lost]))
            assert (await store.account(lost)).state == "idle"
            # A clean stop gives the leases back at once.
            await other.release_leases("w2")
            assert set((await store.lease_owners()).values()) == {None}
        finally:
            await other.close()
            await store.close()

    asyncio.run(main())


def test_workers_started_together_share_from_their_first_heartbeat(tmp_path: Path) -> None:
    """`serve --workers 2`: the first worker up claims half, not everything, so the second
    need not wait for a rebalance before it has work."""

    async def main() -> None:
        store = await open_with_accounts(tmp_path, 10)
        other = await Store.open(tmp_path)
        try:
            first = await store.heartbeat("w1", host="h", pid=1, now=at(0), ttl=TTL, at_least=2)
            assert len(first) == 5  # w2 is not up yet; w1 still takes only its share
            second = await other.heartbeat("w2", host="h", pid=2, now=at(1), ttl=TTL,
                                            at_least=2)  # fmt: skip
            assert len(second) == 5
            assert set(first).isdisjoint(second)
        finally:
            await other.close()
            await store.close()

    asyncio.run(main())


def test_each_job_is_claimed_by_one_worker(tmp_path: Path) -> None:
    async def main() -> None:
        stores = [await Store.open(tmp_path) for _ in range(3)]
        try:
            for i in range(60):
                await stores[0].enqueue("notify", {"n": i}, run_at=at(0), key=f"n-{i}")
            assert await stores[0].enqueue("notify", {"n": 0}, run_at=at(0), key="n-0") == 1
            # Workers that add the same keyed job at the same moment (each serve's roll-up job
            # at start) all get the one job; none fails.
            for round_ in range(10):
                ids = await asyncio.gather(*(
                    s.enqueue("rollup", {}, run_at=at(0), key=f"once-{round_}") for s in stores
                ))  # fmt: skip
                assert len(set(ids)) == 1

            async def drain(store: Store, worker: str) -> list[int]:
                got: list[int] = []
                while batch := await store.claim_jobs(worker, ["notify"], now=at(1), hold=60,
                                                      limit=7):  # fmt: skip
                    got += [job.payload["n"] for job in batch]
                    for job in batch:
                        assert await store.complete_job(job.id, worker, now=at(1))
                return got

            claimed = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
            everything = [n for batch in claimed for n in batch]
            assert sorted(everything) == list(range(60))  # all of them, each once
            # A claim that runs out (its worker died) is taken again; a failed job waits.
            job = await stores[0].enqueue("hook", {}, run_at=at(0))
            assert [j.id for j in await stores[0].claim_jobs("w0", ["hook"], now=at(1),
                                                             hold=10)] == [job]  # fmt: skip
            assert await stores[1].claim_jobs("w1", ["hook"], now=at(5), hold=10) == []
            again = await stores[1].claim_jobs("w1", ["hook"], now=at(12), hold=10)
            assert [(j.id, j.attempts) for j in again] == [(job, 2)]
            assert not await stores[0].complete_job(job, "w0", now=at(13))  # not its claim now
            await stores[1].fail_job(job, "w1", error="503", retry_at=at(60), now=at(13))
            assert await stores[2].claim_jobs("w2", ["hook"], now=at(30), hold=10) == []
            assert len(await stores[2].claim_jobs("w2", ["hook"], now=at(61), hold=10)) == 1
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_an_ended_worker_on_this_machine_is_known_at_once(tmp_path: Path) -> None:
    """A worker's lock in the shared directory outlives it only as a file: once its process is
    gone (kill -9 included), the next worker sees it ended and takes its leases over at once,
    with a new epoch that fences the old one."""
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from imapscope.sync._local import LocalWorkers  # noqa: PLC0415

    directory = tmp_path / "workers"
    holder = (
        "import sys, time; from pathlib import Path; from imapscope.sync._local import "
        "LocalWorkers; held = LocalWorkers(Path(sys.argv[1]), sys.argv[2]); held.claim(); "
        "print('held', flush=True); time.sleep(60)"
    )
    alive = subprocess.Popen([sys.executable, "-c", holder, str(directory), "h:1:alive"],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    doomed = subprocess.Popen([sys.executable, "-c", holder, str(directory), "h:2:doomed"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for process in (alive, doomed):
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "held"
        me = LocalWorkers(directory, "h:3:me")
        me.claim()
        assert me.gone() == []  # both alive
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        assert me.gone() == ["h:2:doomed"]
        assert me.gone() == []  # its file is gone with it
        assert sorted(p.name for p in directory.iterdir()) == ["h:1:alive.lock", "h:3:me.lock"]
        me.release()
        assert sorted(p.name for p in directory.iterdir()) == ["h:1:alive.lock"]
    finally:
        for process in (alive, doomed):
            process.kill()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()

    async def main() -> None:
        store = await open_with_accounts(tmp_path / "db", 2)
        try:
            held = await beat(store, "h:2:doomed", 0)
            assert len(held) == 2
            await store.expire_workers(["h:2:doomed"], at(1))
            taken = await beat(store, "h:3:me", 1)  # long before the lease time
            assert set(taken) == set(held)
            assert all(taken[a] > held[a] for a in held)  # a new epoch: the old one is fenced
            with pytest.raises(LeaseLostError):
                await store.set_state(
                    next(iter(held)), "idle", fence=Fence("h:2:doomed", held[next(iter(held))])
                )
        finally:
            await store.close()

    asyncio.run(main())
