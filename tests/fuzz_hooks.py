"""Schemathesis hooks for tests/fuzz_api.py (loaded through $SCHEMATHESIS_HOOKS).

``no_server_bug`` is ``not_a_server_error`` less one answer: a 502 in the API's error shape, the
API's word for "the mail server (or a webhook endpoint) behind this request failed, and here is
the finding". Inside the fuzzer's network namespace nothing is reachable, so routes that ask a
server (an expectation's registration, a webhook's test) answer that by design. Any other 5xx,
a 500 above all (a bug of ours), fails the run."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def no_server_bug(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 500:
        return
    if response.status_code == 502:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return  # the upstream failed, and the answer says how
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
