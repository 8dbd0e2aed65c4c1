"""The rig's Dovecot with N users, each account a connection of its own, for the benchmarks
that connect many accounts at once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers.dovecot import start_dovecot
from tests.servers.rig import RunningServer, TestCA


def users(n: int) -> dict[str, str]:
    return {f"u{i:05d}": f"pw-{i:05d}" for i in range(n)}


@contextlib.contextmanager
def dovecot_for(ca: TestCA, accounts: dict[str, str]) -> Iterator[RunningServer]:
    """Dovecot with these users and limits above their number (one imap process per
    connection, its default), stopped at the end."""
    n = len(accounts)
    limits = f"""
default_process_limit = {n + 200}
default_client_limit = {4 * n + 1000}
service imap {{
  process_limit = {n + 200}
}}
service anvil {{
  client_limit = {4 * n + 1000}
}}
"""
    # Dovecot's IDLE watches the mailbox with inotify, one instance per imap process, all under
    # one uid: past the kernel's per-user limit (128 by default) the rest fall back to polling
    # every 30 s, which would measure Dovecot's fallback, not imapscope. Raised for the run.
    inotify = Path("/proc/sys/fs/inotify/max_user_instances")
    old_inotify = int(inotify.read_text())
    if old_inotify < n + 256:
        inotify.write_text(str(n + 256))
        print(f"fs.inotify.max_user_instances raised from {old_inotify} to {n + 256} for this run")
    started = time.perf_counter()
    dovecot = start_dovecot(ca, users=accounts, extra_config=limits)
    print(f"dovecot with {n} users started in {time.perf_counter() - started:.1f}s")
    try:
        yield dovecot
    finally:
        dovecot.stop()
        inotify.write_text(str(old_inotify))
