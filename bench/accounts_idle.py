"""Many accounts on one `imapscope serve` process against the rig's Dovecot, all in IDLE.

Needs root (the rig; and it raises fs.inotify.max_user_instances for the run, see below).

    .venv/bin/python -m bench.accounts_idle [--accounts 1000] [--messages 50] [--security tls]
        [--server dovecot|sandbox]

Starts Dovecot (the test rig, needs root; or, with ``--server sandbox``, `imapscope sandbox` in
its own process, for counts Dovecot's process per connection cannot hold, e.g. 10,000) with N
users, registers N accounts in a fresh data
directory, starts `imapscope serve` as its own process and measures:
- connect-all: from the serve process start until every account is `idle` (read from the
  store's SQLite file);
- RSS per account: (serve's RSS with N idle accounts - serve's RSS with none) / N;
- the time of GET /api/v1/accounts (what the accounts page refreshes every 2 s);
- new-mail-to-event latency: ``--messages`` messages APPENDed (by another client) to random
  accounts' INBOX, one at a time; for each, the time from the APPEND's completion to the
  `message.new` event's timestamp (both this machine's clock), p50 and p99;
- reconnect-all: serve stopped and started again on the same store (everything synced), from
  the start until every account has synced again and is `idle`, and serve's CPU per account.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import imaplib
import os
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.scripted import sandbox_process
from tests.servers.rig import TestCA

from bench._many_users import dovecot_for
from bench._many_users import users as many_users
from imapscope.store import DB_FILE, AccountSpec, Store


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    url: str
    token: str | None  # printed at the first start only


def serve(
    data_dir: Path, ca_file: Path, profile: str | None = None, *, first: bool = True
) -> Serve:
    """``profile``: a file for cProfile's data (py-spy's are taken by :func:`spy`); ``first``:
    the data directory is new, so serve prints its first API token."""
    runner = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
    proc = subprocess.Popen(
        [*runner, "-m", "imapscope", "serve", "--data-dir", str(data_dir),
         "--port", "0", "--ca-file", str(ca_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "web UI" not in line:
        raise SystemExit(f"serve did not start: {line}{proc.stdout.read()}")
    url = line.split("web UI ")[1].split("/ ")[0]
    token = None
    if first and "first token" in proc.stdout.readline():
        token = proc.stdout.readline().strip()
    return Serve(proc, url, token)


def spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy (the bench extra installs it) sampling a running process until SIGINT, its
    samples in ``out`` (``--format raw``: for flame graphs, or to count by frame)."""
    command = [str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking",
               "--pid", str(pid), "--format", "raw", "-o", out]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def synced_since(db: Path, since: dt.datetime) -> int:
    """Accounts `idle` with a sync finished after ``since``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT last_sync FROM accounts WHERE state = 'idle'").fetchall()
    return sum(
        1 for (at,) in rows if at and dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC) > since
    )


def states(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM accounts GROUP BY state").fetchall())


def settle_rss(pid: int, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return rss_kib(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--security", choices=["tls", "starttls", "none"], default="tls")
    parser.add_argument("--timeout", type=float, default=300.0, help="for connect-all")
    parser.add_argument(
        "--profile", help="serve's cProfile data to this file (py-spy:FILE: py-spy's samples)"
    )
    parser.add_argument("--server", choices=["dovecot", "sandbox"], default="dovecot")
    args = parser.parse_args()
    n = args.accounts
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # one connection per account
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    work = Path(tempfile.mkdtemp(prefix="imapscope-bench-"))
    users = many_users(n)
    if args.server == "sandbox":
        proc, banner = sandbox_process(
            "--open", "--port", "0", "--tls-port", "0", "--smtp-port", "0", "--admin-port", "0",
            "--data-dir", str(work / "sandbox"),
        )  # fmt: skip
        try:
            target = Target(
                "127.0.0.1", int(banner.split("plaintext+STARTTLS port:")[1].split()[0]),
                int(banner.split("implicit TLS port:")[1].split()[0]),
                Path(banner.split("CA file:")[1].split()[0]),
            )  # fmt: skip
            measure(args, work, users, target)
        finally:
            proc.terminate()
            proc.wait(30)
        return
    ca = TestCA(work / "ca")
    with dovecot_for(ca, users) as dovecot:
        measure(args, work, users, Target(dovecot.host, dovecot.port, dovecot.tls_port, ca.ca_file))


@dataclass
class Target:
    """The IMAP server the accounts are on."""

    host: str
    port: int  # plaintext (STARTTLS)
    tls_port: int
    ca_file: Path


def measure(args: argparse.Namespace, work: Path, users: dict[str, str], server: Target) -> None:
    n = args.accounts
    port = {"tls": server.tls_port, "starttls": server.port, "none": server.port}
    baseline_dir = work / "empty"
    empty = serve(baseline_dir, server.ca_file)
    baseline = settle_rss(empty.proc.pid)
    stop(empty.proc)

    data = work / "data"

    async def register() -> None:
        store = await Store.open(data)
        for user, password in users.items():
            spec = AccountSpec(
                email=f"{user}@bench.test", host="localhost", port=port[args.security],
                security=args.security, username=user, poll_interval=3600,
            )  # fmt: skip
            await store.add_account(spec, password)
        await store.close()

    asyncio.run(register())
    db = data / DB_FILE
    t0 = time.perf_counter()
    spied = (args.profile or "").startswith("py-spy:")
    served = serve(data, server.ca_file, None if spied else args.profile)
    proc = served.proc
    sampler = spy(proc.pid, args.profile[7:]) if spied else None
    try:
        seen: dict[str, int] = {}
        while time.perf_counter() - t0 < args.timeout:
            seen = states(db)
            if seen.get("idle", 0) == n:
                break
            time.sleep(0.05)
        connect_all = time.perf_counter() - t0
        connect_cpu = cpu_seconds(proc.pid)
        if sampler is not None:  # connect-all only
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
        if seen.get("idle", 0) != n:
            raise SystemExit(f"not all idle after {args.timeout:.0f}s: {seen}")
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
            errors = dict(
                conn.execute("SELECT code, count(*) FROM errors GROUP BY code").fetchall()
            )
        rss = settle_rss(proc.pid)
        headers = {"Authorization": f"Bearer {served.token}"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=60) as api:
            listed = []
            for _ in range(5):
                began = time.perf_counter()
                answer = api.get("/api/v1/accounts")
                listed.append(time.perf_counter() - began)
                if answer.status_code != 200 or len(answer.json()) != n:
                    raise SystemExit(f"GET /api/v1/accounts: {answer.status_code}")

        latencies = []
        rng = random.Random(1)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            cursor = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            for i in range(args.messages):
                user = f"u{rng.randrange(n):05d}"
                client = imaplib.IMAP4(server.host, server.port)
                client.login(user, users[user])
                raw = f"From: bench@x\r\nSubject: bench {i}\r\n\r\nhi\r\n".encode()
                client.append("INBOX", None, None, raw)
                sent = dt.datetime.now(dt.UTC)
                client.logout()
                deadline = time.perf_counter() + 30
                while True:
                    row = conn.execute(
                        "SELECT id, at FROM events WHERE kind = 'message.new' AND id > ?"
                        " ORDER BY id LIMIT 1",
                        (cursor,),
                    ).fetchone()
                    if row:
                        cursor = row[0]
                        at = dt.datetime.fromisoformat(row[1]).replace(tzinfo=dt.UTC)
                        latencies.append(max(0.0, (at - sent).total_seconds() * 1000))
                        break
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"message {i} to {user} never became an event")
                    time.sleep(0.002)
    finally:
        stop(proc)
    restarted = dt.datetime.now(dt.UTC)
    t1 = time.perf_counter()
    again = serve(data, server.ca_file, first=False)
    try:
        done = 0
        while time.perf_counter() - t1 < args.timeout:
            done = synced_since(db, restarted)
            if done == n:
                break
            time.sleep(0.2)
        reconnect_all = time.perf_counter() - t1
        reconnect_cpu = cpu_seconds(again.proc.pid)
        if done != n:
            raise SystemExit(f"after the restart, {done} of {n} synced in {args.timeout:.0f}s")
    finally:
        stop(again.proc)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"accounts: {n} ({args.security}, {args.server}) on one serve process, "
          f"cores: {os.cpu_count()}")  # fmt: skip
    print(
        f"connect-all (serve start to all idle): {connect_all:.1f} s, "
        f"serve's own CPU meanwhile {connect_cpu:.1f} s (the rest: the server, on 2 cores)"
    )
    print(
        f"serve CPU per account: {connect_cpu / n * 1000:.1f} ms; events written by then: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + "; errors: "
        + (", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none")
    )
    print(f"serve RSS: {baseline} KiB with 0 accounts, {rss} KiB with {n} idle")
    print(f"RSS per account: {(rss - baseline) / n:.1f} KiB")
    took = statistics.median(listed) * 1000
    print(f"GET /api/v1/accounts ({n} accounts): median of 5 {took:.0f} ms")
    print(
        f"reconnect-all (serve restarted, store synced; start to all synced again and idle): "
        f"{reconnect_all:.1f} s, serve CPU per account {reconnect_cpu / n * 1000:.1f} ms"
    )
    print(
        f"new-mail-to-event latency over {len(latencies)} messages: "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
