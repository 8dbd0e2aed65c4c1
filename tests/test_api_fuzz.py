"""Schemathesis against the OpenAPI document of a real ``serve``: 0 server errors.

Run in a network namespace of its own with only loopback up (``unshare --net``): the fuzzer sends
random host names and addresses to /check and /verify, and none of that may leave the machine.
Bounded: 15 examples per operation, a fixed seed (tests/fuzz_api.py). On SQLite and on
PostgreSQL (reached through its unix socket, which the namespace does not cut off).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imapscope.store._db import DATABASE_ENV
from tests.conftest import Database

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                    reason="needs unshare and ip (util-linux, iproute2) and root")  # fmt: skip
def test_schemathesis_finds_no_server_error(tmp_path: Path, database: Database) -> None:
    command = (f"ip link set lo up && exec {sys.executable} -m tests.fuzz_api "
               f"{tmp_path / 'data'} 15")  # fmt: skip
    env = dict(os.environ)
    if database.server is not None and database.url is not None:
        env[DATABASE_ENV] = database.server.socket_url(database.url)
    process = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", command], cwd=ROOT, capture_output=True,
        text=True, timeout=900, check=False, env=env,
    )  # fmt: skip
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-6000:]
    assert "Server error" not in output
    assert " passed" in output  # it ran: "N generated, N passed"
