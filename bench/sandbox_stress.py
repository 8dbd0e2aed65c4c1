"""The stress mix of tests/stress.py against the sandbox and the rig's Dovecot, side by side:
commands per second for each, the ratio, and the state errors each session's model found. Each
server runs in its own processes, so the client's Python does not share a core's GIL with the
server it measures.

Needs root (the rig).

    .venv/bin/python -m bench.sandbox_stress [--sessions 10] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.scripted import sandbox_process
from tests.servers.dovecot import start_dovecot
from tests.servers.rig import TestCA
from tests.stress import Model, session


def run(port: int, user: str, password: str, sessions: int, seconds: float) -> tuple[int, int]:
    async def main() -> list[Model]:
        deadline = time.monotonic() + seconds
        runs = [session(port, user, password, deadline, seed) for seed in range(sessions)]
        return await asyncio.gather(*runs)

    models = asyncio.run(main())
    return sum(m.commands for m in models), sum(len(m.errors) for m in models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    sandbox, banner = sandbox_process(
        "--user", "stress:pw-stress", "--port", "0", "--tls-port", "0", "--smtp-port", "0",
        "--admin-port", "0", "--data-dir", tempfile.mkdtemp(prefix="imapscope-stress-"),
    )  # fmt: skip
    try:
        port = int(banner.split("plaintext+STARTTLS port:")[1].split()[0])
        ours, our_errors = run(port, "stress", "pw-stress", args.sessions, args.seconds)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    ca = TestCA(Path(tempfile.mkdtemp(prefix="imapscope-stress-")) / "ca")
    dovecot = start_dovecot(ca, users={"stress": "pw-stress"})
    try:
        theirs, their_errors = run(dovecot.port, "stress", "pw-stress", args.sessions,
                                   args.seconds)  # fmt: skip
    finally:
        dovecot.stop()
    print(f"sandbox: {ours / args.seconds:.0f} commands/s, {our_errors} state errors")
    print(f"dovecot: {theirs / args.seconds:.0f} commands/s, {their_errors} state errors")
    print(
        f"ratio_sandbox_vs_dovecot={ours / max(1, theirs):.2f} "
        f"state_errors_sandbox={our_errors} state_errors_dovecot={their_errors}"
    )


if __name__ == "__main__":
    main()
