"""Monitors with two `serve` workers on one PostgreSQL database, as real processes: both take
part, every scheduled run happens once, and a fault gives exactly one notification of each kind
(the same webhook-id never twice), whichever worker ran the monitor and sent it."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imapscope.monitor import prepare
from imapscope.sandbox import FaultRule, SandboxServer
from imapscope.store import MonitorSpec, Store
from tests.receivers import WebhookReceiver, webhook_receiver
from tests.servers.postgres import Postgres
from tests.test_serve_cli import until
from tests.test_workers import query, sandbox, start_worker, stop_all

__all__ = ["sandbox"]  # the fixture, shared with tests/test_workers.py

MONITORS = 6
INTERVAL = 5


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


def test_two_workers_run_each_monitor_once_and_notify_once(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:  # fmt: skip
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"

    async def setup(store: Store) -> list[int]:
        shown, secret = prepare("webhook", receiver.url)
        hook = await store.add_channel("hook", "webhook", receiver.url, shown, secret)
        made = []
        for i in range(MONITORS):
            spec = MonitorSpec(f"u{i}", host="localhost", port=server.tls_port, security="tls",
                               username=f"u{i}", interval=INTERVAL, channels=(hook.id,),
                               rules={"fail_after": 1, "recover_after": 1})  # fmt: skip
            made.append(
                (await store.add_monitor(spec, f"pw-{i:04d}", now=dt.datetime.now(dt.UTC))).id
            )
        return made

    ids = query(data, url, setup)
    workers = [start_worker(data, url, ca_file) for _ in range(2)]
    try:

        async def run_counts(store: Store) -> dict[int, int]:
            return {m: len(await store.runs(m)) for m in ids}

        until("every monitor's first run", lambda: min(query(data, url, run_counts).values()) >= 1,
              timeout=90)  # fmt: skip
        # One failed login (of whichever monitor comes first): one incident, opened, resolved.
        server.faults.add(FaultRule("no", "AUTHENTICATE", count=1, code="AUTHENTICATIONFAILED",
                                    text="Authentication failed."))  # fmt: skip
        until("the opened and resolved notifications", lambda: len(receiver.deliveries) >= 2,
              timeout=60)  # fmt: skip
        time.sleep(2 * INTERVAL)  # more runs, to be sure nothing comes twice
    finally:
        stop_all(workers)

    async def history(store: Store) -> dict[int, list[Any]]:
        return {m: await store.runs(m) for m in ids}

    runs = query(data, url, history)
    everyone = [r for found in runs.values() for r in found]
    assert len({r.worker for r in everyone}) == 2, Counter(r.worker for r in everyone)
    for monitor_id, found in runs.items():
        # Each run started at its due time plus its lateness: the due times are one interval
        # apart (a late first run does not move the phase), none twice, none in between.
        due = sorted((r.at - dt.timedelta(milliseconds=r.late_ms)).timestamp() for r in found)
        gaps = [b - a for a, b in itertools.pairwise(due)]
        assert all(gap > INTERVAL - 0.1 for gap in gaps), (monitor_id, gaps)
    kinds = [json.loads(d.body)["type"] for d in receiver.deliveries]
    assert kinds == ["incident.opened", "incident.resolved"], kinds
    ids_sent = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert len(set(ids_sent)) == len(ids_sent)
    names = {json.loads(d.body)["data"]["monitor"]["name"] for d in receiver.deliveries}
    assert len(names) == 1  # the one monitor whose login failed, opened and resolved
