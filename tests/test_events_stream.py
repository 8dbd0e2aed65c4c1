"""The event stream (Server-Sent Events) against a real serve and the sandbox: events arrive as
they are written, filtered like /events; a client that reconnects with Last-Event-ID gets
exactly the events after it, none twice, none lost; account errors are events with the finding;
bad input is refused before the stream starts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imapscope.sandbox import FaultRule
from tests.conftest import PASSWORD, Sandbox
from tests.serving import Serving
from tests.test_api import account, wait_for
from tests.test_expect import send


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream into messages: {"id", "event", "data"} (comments skipped)."""
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in current:
                yield current
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.removeprefix(" ")


def read(api: httpx.Client, count: int, **params: Any) -> list[dict[str, Any]]:
    """The first ``count`` messages of a stream opened with ``params`` (headers under
    ``headers``); the stream is closed after them."""
    headers = params.pop("headers", {})
    found: list[dict[str, Any]] = []
    with api.stream("GET", "/api/v1/events/stream", params=params, headers=headers,
                    timeout=httpx.Timeout(30, read=20)) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in sse(response.iter_lines()):
            found.append(message | {"data": json.loads(message["data"])})
            if len(found) == count:
                break
    return found


@pytest.mark.usefixtures("database")
def test_a_stream_resumes_after_last_event_id_with_no_gap(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        wait_for(api, f"/api/v1/accounts/{alice}", lambda a: a["state"] == "idle")
        start = api.get("/api/v1/events", params={"limit": 1000}).json()["next"]
        for i in range(3):
            send(sandbox, f"streamed {i}")
        first = read(api, 2, kind="message.new", account=alice, after=start)
        for i in range(3, 5):
            send(sandbox, f"streamed {i}")
        # Reconnect as a browser does: the id of the last message received.
        rest = read(api, 3, kind="message.new", headers={"Last-Event-ID": first[-1]["id"]})
    got = [m["data"]["data"]["subject"] for m in first + rest]
    assert got == [f"streamed {i}" for i in range(5)]  # in order, none twice, none lost
    assert all(m["event"] == "message.new" for m in first + rest)
    assert all(m["id"] == str(m["data"]["id"]) for m in first + rest)
    ids = [int(m["id"]) for m in first + rest]
    assert ids == sorted(ids)


def test_a_stream_from_now_on_shows_new_events_as_they_come(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        wait_for(api, f"/api/v1/accounts/{alice}", lambda a: a["state"] == "idle")
        sent = time.monotonic()
        with api.stream("GET", "/api/v1/events/stream", params={"kind": "message.new"},
                        timeout=httpx.Timeout(30, read=20)) as response:  # fmt: skip
            send(sandbox, "live")
            message = next(sse(response.iter_lines()))
    assert json.loads(message["data"])["data"]["subject"] == "live"
    assert time.monotonic() - sent < 20  # pushed, well before any read timeout


def test_account_errors_are_events_with_the_finding(served: Serving, sandbox: Sandbox) -> None:
    sandbox.server.faults.add(FaultRule("no", "AUTHENTICATE", code="AUTHENTICATIONFAILED",
                                        text=f"no, not with {PASSWORD}"))  # fmt: skip
    with served.client() as api:
        alice = api.post("/api/v1/accounts", params={"verify": False},
                         json=account(sandbox)).json()["id"]  # fmt: skip
        found = read(api, 1, kind="account.error", account=alice, after=0)
        logged = api.get(f"/api/v1/accounts/{alice}/errors").json()[-1]  # the oldest: the first
    data = found[0]["data"]["data"]
    assert data["code"] == "AUTH_FAILED"
    # The finding as the error log has it (the same summary, fix, step, state).
    assert data == {"code": logged["code"], "summary": logged["message"], "fix": logged["fix"],
                    "step": logged["step"], "state": logged["state"]}  # fmt: skip
    assert PASSWORD not in json.dumps(found)


@pytest.mark.parametrize(
    ("params", "headers", "status", "said"),
    [({"kind": "message.nope"}, {}, 422, "unknown event kind 'message.nope'"),
     ({"account": 999}, {}, 404, "no account with id 999"),
     ({}, {"Last-Event-ID": "abc"}, 422, "Last-Event-ID 'abc' is not an event id"),
     ({"after": -1}, {}, 422, "after")],
)  # fmt: skip
def test_bad_stream_requests_are_refused_before_it_starts(
    served: Serving, params: dict[str, Any], headers: dict[str, str], status: int, said: str
) -> None:
    with served.client() as api:
        answer = api.get("/api/v1/events/stream", params=params, headers=headers)
    assert answer.status_code == status
    assert said in answer.json()["error"]
