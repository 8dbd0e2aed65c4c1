"""Group commit (`imapscope.store._coalesce`): the store calls an account makes as it connects,
awaited one at a time (each its own transaction, as when accounts connect one by one) against
the same calls made by many accounts at once (shared transactions), side by side in one run.

    .venv/bin/python -m bench.group_commit [--accounts 300] [--database postgresql://...]

Prints, for each call, the CPU per call alone and at once, and the ratio. SQLite in a temporary
directory unless ``--database`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from imapscope.store import AccountSpec, Store


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


async def main(accounts: int, database: str | None) -> None:
    store = await Store.open(Path(tempfile.mkdtemp(prefix="imapscope-bench-")), database)
    try:
        ids = []
        for i in range(accounts):
            spec = AccountSpec(email=f"u{i}@bench.test", host="localhost", port=993,
                               security="tls", username=f"u{i}")  # fmt: skip
            ids.append((await store.add_account(spec, "pw-secret")).id)
        inbox: dict[int, int] = {}

        async def folders(i: int) -> Any:
            listed = await store.set_folders(i, ["INBOX"])
            inbox[i] = listed[0].id

        def apply(i: int) -> Awaitable[None]:
            return store.apply_folder(
                inbox[i], uidvalidity=5, uidnext=21, complete=True,
                events=[("folder.synced", {"folder": "INBOX", "messages": 20})],
            )  # fmt: skip

        # As the sync engine makes them for one account, in order; each step twice (alone,
        # then at once), alternating states so that every write changes something.
        steps: list[tuple[str, Callable[[int, int], Awaitable[Any]]]] = [
            ("account", lambda i, _: store.account(i)),
            ("secret", lambda i, _: store.secret(i)),
            ("set_state", lambda i, n: store.set_state(i, f"syncing{n}")),
            ("set_folders", lambda i, _: folders(i)),
            ("folders", lambda i, _: store.folders(i)),
            ("apply_folder", lambda i, _: apply(i)),
            ("mark_synced", lambda i, _: store.mark_synced(i)),
        ]
        print(f"{accounts} accounts, {store.dialect}; CPU per call")
        print(f"{'call':14s} {'alone':>10s} {'at once':>10s}  ratio")
        for n, (name, call) in enumerate(steps):
            began = cpu()
            for i in ids:
                await call(i, 2 * n)
            alone = (cpu() - began) / accounts
            began = cpu()
            await asyncio.gather(*(call(i, 2 * n + 1) for i in ids))
            together = (cpu() - began) / accounts
            print(f"{name:14s} {alone * 1e3:8.3f}ms {together * 1e3:8.3f}ms  "
                  f"{alone / max(together, 1e-9):5.1f}x")  # fmt: skip
    finally:
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.accounts, args.database))
