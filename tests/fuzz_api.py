"""Schemathesis against a real ``serve``, run by tests/test_api_fuzz.py inside a network namespace
of its own (only loopback), so that the random hosts it sends to /check and /verify reach
nothing outside: ``python -m tests.fuzz_api DATA_DIR [MAX_EXAMPLES]``.

Starts serve (uvicorn on loopback) with one paused account, runs the schemathesis CLI over every
operation of the OpenAPI document with the ``no_server_bug`` check (tests/fuzz_hooks.py: no 5xx
but the API's deliberate 502 for a server behind the request that failed; every other check is
about the document's precision, not about 500s), and exits with its status. Bounded: a fixed
number of examples per operation, a request timeout, a seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imapscope.store import AccountSpec
from imapscope.sync import SyncOptions
from tests.serving import serving

MAX_EXAMPLES = 30
SEED = 20261201


def main() -> int:
    data_dir = Path(sys.argv[1])
    examples = int(sys.argv[2]) if len(sys.argv) > 2 else MAX_EXAMPLES
    with serving(data_dir, SyncOptions(timeout=2.0)) as served:
        spec = AccountSpec(email="fuzz@example.test", host="127.0.0.1", port=9, security="tls",
                           username="fuzz", poll_interval=3600)  # fmt: skip

        async def one_account(store: object) -> None:
            added = await served.store.add_account(spec, "fuzz-password")
            await served.store.set_paused(added.id, True)

        served.call(one_account)  # type: ignore[arg-type]
        st = Path(sys.executable).with_name("st")
        process = subprocess.run(
            [str(st), "run", f"{served.url}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {served.token}",
             "--url", served.url, "--checks", "no_server_bug",
             "--max-examples", str(examples), "--seed", str(SEED),
             "--request-timeout", "70", "--phases", "examples,coverage,fuzzing",
             "--continue-on-failure", "--no-color",
             # Revoking a token could revoke the fuzzer's own (tested in test_api); /events
             # holds each request up to its ``wait`` (its bounds are tested in test_api), and
             # the stream never ends (tests/test_events_stream.py).
             "--exclude-operation-id", "revoke_token_api_v1_tokens__token_id__delete",
             "--exclude-path", "/api/v1/events", "--exclude-path", "/api/v1/events/stream"],
            check=False, timeout=900,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks"},
        )  # fmt: skip
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
