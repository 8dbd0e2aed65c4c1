"""`serve --workers 1` against `serve --workers 2` on one PostgreSQL database: how long until
every account is `idle` (connect-all), and the CPU the serve processes use meanwhile.

Needs root (the rig's Dovecot and a throwaway PostgreSQL cluster).

    .venv/bin/python -m bench.workers_connect [--accounts 1000] [--security tls]

Each run starts from a fresh database with the same N accounts (Dovecot users) and measures from
serve's start until the store shows all N `idle`. Prints both, side by side, and the ratio of
their connect-all rates (the issue's target: 2 workers >= 1.8x the rate of 1). Dovecot runs on
the same 2 cores: its per-connection imap processes are part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.servers.postgres import Postgres, start_postgres
from tests.servers.rig import RunningServer, TestCA

from bench._many_users import dovecot_for
from bench._many_users import users as many_users
from imapscope.store import AccountSpec, Store


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(workers: int, url: str, work: Path, users: dict[str, str], *, port: int, ca: Path,
        security: str, timeout: float) -> tuple[float, float, Counter[str]]:  # fmt: skip
    data = work / f"data-{workers}"

    async def register() -> None:
        store = await Store.open(data, url)
        for user, password in users.items():
            spec = AccountSpec(email=f"{user}@bench.test", host="localhost", port=port,
                               security=security, username=user, poll_interval=3600)  # fmt: skip
            await store.add_account(spec, password)
        await store.close()

    async def idle() -> int:
        store = await Store.open(data, url)
        try:
            return sum(a.state == "idle" for a in await store.accounts())
        finally:
            await store.close()

    async def failures() -> Counter[str]:
        """The error entries written during connect-all, by finding code (each is a retry)."""
        store = await Store.open(data, url)
        try:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            failed = [a for a, s in (await store.summaries(since)).items() if s.errors]
            codes: Counter[str] = Counter()
            for account_id in failed:
                codes.update(e.code for e in await store.errors(account_id))
            return codes
        finally:
            await store.close()

    asyncio.run(register())
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(data), "--port", "0",
         "--database", url, "--ca-file", str(ca), "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    pids = [proc.pid]
    if workers > 1:
        for _ in range(4):
            line = proc.stdout.readline()
            if "pids " in line:
                pids = [int(p) for p in line.split("pids ")[1].split(", ")]
                break
    try:
        while time.perf_counter() - started < timeout:
            if asyncio.run(idle()) == len(users):
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"--workers {workers}: not all idle after {timeout:.0f}s")
        took = time.perf_counter() - started
        cpu = sum(cpu_seconds(p) for p in pids)
    finally:
        proc.terminate()
        proc.wait(60)
    return took, cpu, asyncio.run(failures())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--security", choices=["tls", "starttls"], default="tls")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    n = args.accounts
    work = Path(tempfile.mkdtemp(prefix="imapscope-workers-"))
    ca = TestCA(work / "ca")
    users = many_users(n)
    with dovecot_for(ca, users) as dovecot:
        postgres = start_postgres()
        try:
            compare(args, work, ca, users, dovecot=dovecot, postgres=postgres)
        finally:
            postgres.stop()


def compare(args: argparse.Namespace, work: Path, ca: TestCA, users: dict[str, str], *,
            dovecot: RunningServer, postgres: Postgres) -> None:  # fmt: skip
    n = args.accounts
    port = dovecot.tls_port if args.security == "tls" else dovecot.port
    results = {}
    for workers in (1, 2):
        url = postgres.create_database(f"w{workers}")
        results[workers] = run(workers, url, work, users, port=port, ca=ca.ca_file,
                               security=args.security, timeout=args.timeout)  # fmt: skip
    print(f"accounts: {n} ({args.security}), PostgreSQL, cores: {os.cpu_count()}")
    for workers, (took, cpu, failed) in results.items():
        said = ", ".join(f"{code} {count}" for code, count in failed.most_common()) or "none"
        print(f"--workers {workers}: connect-all {took:.1f} s ({n / took:.0f} accounts/s), "
              f"serve CPU {cpu:.1f} s ({cpu / n * 1000:.1f} ms per account); errors "
              f"(retried): {said}")  # fmt: skip
    ratio = results[1][0] / results[2][0]
    print(f"rate_ratio_2_vs_1={ratio:.2f} (target >= 1.8)")


if __name__ == "__main__":
    main()
