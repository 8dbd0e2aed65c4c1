"""Trips to aiosqlite's thread: stock aiosqlite against the store's one-trip connection
(`imapscope.store._sqlite`), side by side in one run.

    .venv/bin/python -m bench.sqlite_trips [--rounds 2000]

Prints, for each: the CPU and wall time per statement of a bare driver loop (execute, fetch,
close: what SQLAlchemy does per statement), and per store round as the sync engine makes them
when an account connects (read the account, write its state, read its folders: three
transactions through SQLAlchemy's ORM); then the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from imapscope.store import AccountSpec, Store, _sqlite
from imapscope.store import _db as store_db


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def stock_creator(url: str) -> Callable[[], Awaitable[Any]]:
    path = url.split("///", 1)[1]

    async def connect() -> Any:
        return await aiosqlite.connect(path, check_same_thread=False)

    return connect


async def driver_loop(conn: Any, rounds: int) -> tuple[float, float]:
    started, used = time.perf_counter(), cpu()
    for _ in range(rounds):
        cursor = conn.cursor()
        cursor = await cursor.__aenter__()  # what SQLAlchemy does
        await cursor.execute("SELECT 1")
        await cursor.fetchall()
        await cursor.close()
    return (time.perf_counter() - started) / rounds, (cpu() - used) / rounds


async def store_rounds(rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        store = await Store.open(Path(directory))
        try:
            for i in range(20):
                spec = AccountSpec(email=f"u{i}@example.test", host="127.0.0.1", port=9,
                                   security="tls", username=f"u{i}")  # fmt: skip
                await store.add_account(spec, "pw")
            started, used = time.perf_counter(), cpu()
            for i in range(rounds):
                account = await store.account(1 + i % 20)
                await store.set_state(account.id, "idle" if i % 2 else "syncing")
                await store.folders(account.id)
            return (time.perf_counter() - started) / rounds, (cpu() - used) / rounds
        finally:
            await store.close()


async def main(rounds: int) -> None:
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "bench.db")
        sqlite3.connect(path).close()
        for name, make in (("stock aiosqlite", stock_creator), ("one trip", _sqlite.creator)):
            conn = await make(f"sqlite+aiosqlite:///{path}")()
            try:
                driver = await driver_loop(conn, rounds * 5)
            finally:
                await conn.close()
            saved = store_db._sqlite.creator
            store_db._sqlite.creator = make  # type: ignore[assignment]
            try:
                store = await store_rounds(rounds)
            finally:
                store_db._sqlite.creator = saved  # type: ignore[assignment]
            results[name] = {"driver": driver, "store": store}
    for name, found in results.items():
        (d_wall, d_cpu), (s_wall, s_cpu) = found["driver"], found["store"]
        print(f"{name:16} statement: {d_wall * 1e6:7.1f} us wall {d_cpu * 1e6:7.1f} us CPU | "
              f"store round: {s_wall * 1e3:5.2f} ms wall {s_cpu * 1e3:5.2f} ms CPU")  # fmt: skip
    stock, fast = results["stock aiosqlite"], results["one trip"]
    print(f"ratio stock/one-trip CPU: statement {stock['driver'][1] / fast['driver'][1]:.2f}x, "
          f"store round {stock['store'][1] / fast['store'][1]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
