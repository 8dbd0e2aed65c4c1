"""Webhooks with several workers: two serve workers on one PostgreSQL database deliver each
event once (the fan-out and each delivery's claim are the database's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapscope.store import Store
from imapscope.store._db import DATABASE_ENV
from imapscope.sync import SyncOptions
from tests.conftest import Sandbox
from tests.receivers import WebhookReceiver
from tests.servers.postgres import Postgres
from tests.serving import serving
from tests.test_api import account
from tests.test_webhooks import add_webhook, receiver, verified

__all__ = ["receiver"]  # the fixture


def test_two_workers_deliver_each_event_once(
    sandbox: Sandbox,
    tmp_path: Path,
    postgres: Postgres,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
) -> None:
    """Two serve workers on one PostgreSQL database, one endpoint, 300 events written while
    both run: every event arrives, none twice (the fan-out and each delivery's claim are the
    database's: one worker each)."""
    monkeypatch.setenv(DATABASE_ENV, postgres.create_database())
    options = SyncOptions(ca_file=str(sandbox.ca_file), timeout=5)
    with serving(tmp_path / "data", options) as one, serving(tmp_path / "data", options) as two:
        with one.client() as api:
            alice = api.post("/api/v1/accounts", params={"verify": False},
                             json=account(sandbox, poll_interval=3600)).json()["id"]  # fmt: skip
            api.post(f"/api/v1/accounts/{alice}/pause")
            hook = add_webhook(api, receiver.url, events=["message.new"])

        async def write(store: Store, first: int) -> None:
            for uid in range(first, first + 150):
                await store.add_event(alice, "message.new", {"folder": "INBOX", "uid": uid})

        for served, first in ((one, 1), (two, 151)):  # each worker writes half
            served.call(lambda store, first=first: write(store, first))  # type: ignore[misc]
        got = receiver.wait(300)
    ids = [d.headers["webhook-id"] for d in got]
    assert len(ids) == len(set(ids)) == 300
    uids = sorted(verified(hook["secret"], d)["data"]["uid"] for d in got)
    assert uids == list(range(1, 301))
