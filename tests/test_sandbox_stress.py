"""Many sessions on one mailbox of the sandbox, with zero state errors (tests/stress.py checks
every untagged response against each session's model). Bounded: a few seconds on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from imapscope.sandbox import SandboxServer, build_store
from tests.scripted import running
from tests.stress import Model, session

SECONDS = 3.0


@pytest.mark.parametrize("sessions", [10, 50])
def test_concurrent_sessions_see_a_consistent_mailbox(sessions: int) -> None:
    store = build_store([("stress", "pw-stress")], demo_messages=0)
    server = SandboxServer(store, port=0)
    with running(server):

        async def main() -> list[Model]:
            deadline = time.monotonic() + SECONDS
            runs = [session(server.port, "stress", "pw-stress", deadline, seed)
                    for seed in range(sessions)]  # fmt: skip
            return await asyncio.gather(*runs)

        models = asyncio.run(main())
    errors = [e for m in models for e in m.errors]
    commands = sum(m.commands for m in models)
    assert commands > sessions * 10  # the mix really ran
    assert errors == [], f"{len(errors)} state errors in {commands} commands: {errors[:10]}"
