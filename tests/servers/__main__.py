"""Start one server of the rig by hand, e.g. for a benchmark: it prints how to reach it, then runs
until interrupted (Ctrl-C or SIGTERM), and stops cleanly.

    python -m tests.servers dovecot --messages 100000
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.servers.courier import start_courier
from tests.servers.cyrus import start_cyrus
from tests.servers.dovecot import start_dovecot
from tests.servers.rig import RigError, TestCA

STARTERS = {"dovecot": start_dovecot, "courier": start_courier, "cyrus": start_cyrus}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__)
    parser.add_argument("server", choices=sorted(STARTERS))
    parser.add_argument(
        "--messages", type=int, default=0, help="seed this many into the first user's INBOX"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the message generator")
    args = parser.parse_args(argv)
    if args.messages < 0:
        parser.error("--messages must be 0 or more")

    ca = TestCA(Path(tempfile.mkdtemp(prefix="imapscope-ca-")))
    started = time.monotonic()
    try:
        server = STARTERS[args.server](ca, messages=args.messages, seed_value=args.seed)
    except RigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        shutil.rmtree(ca.directory, ignore_errors=True)
        return 1
    print(server.describe())
    print(f"  ready in {time.monotonic() - started:.2f} s; Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
        shutil.rmtree(ca.directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
