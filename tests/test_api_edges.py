"""The API's edge: every input validated with a 4xx that says what to fix (never a 500), the
token checked before a body is read, bodies capped, security headers, throttled web logins,
abandoned checks cancelled, and no echoed secret in any answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imapscope.sync import Backoff, SyncOptions
from imapscope.web._throttle import MAX_FAILURES, WINDOW, LoginThrottle
from tests.hostile import hostile, hostile_server
from tests.serving import Serving, serving
from tests.test_api import wait_for

# Every test here runs on SQLite and on PostgreSQL (the ``database`` fixture).
pytestmark = pytest.mark.usefixtures("database")

SECRET = "api-s3cret-Pa55!"
BIG = 2**63


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serving]:
    options = SyncOptions(timeout=2, backoff=Backoff(first=30))
    with serving(tmp_path / "data", options) as s:
        yield s


def body(**change: Any) -> dict[str, Any]:
    return {"email": "a@example.test", "host": "127.0.0.1", "port": 9, "security": "tls",
            "username": "a", "secret": SECRET, "poll_interval": 60} | change  # fmt: skip


def made(client: httpx.Client) -> int:
    answer = client.post("/api/v1/accounts", params={"verify": False}, json=body())
    assert answer.status_code == 201, answer.text
    account_id = int(answer.json()["id"])
    client.post(f"/api/v1/accounts/{account_id}/pause")
    # Its supervisor says so a moment later: what the tests compare must have settled.
    wait_for(client, f"/api/v1/accounts/{account_id}", lambda a: a["state"] == "paused")
    return account_id


@pytest.mark.parametrize(
    ("change", "says"),
    [({"exclude_folders": None}, "exclude_folders cannot be null"),
     ({"host": None}, "host cannot be null"),
     ({"port": None}, "port cannot be null"),
     ({"secret": None}, "secret cannot be null"),
     ({"host": "exa..mple.com"}, "empty label"),
     ({"host": "a" * 64 + ".example.com"}, "over 63"),
     ({"proxy": "socks5://prøxy:1080"}, "plain ASCII"),
     ({"proxy": "ftp://proxy:21"}, "proxy URL must start with"),
     ({"include_folders": [""]}, "include_folders")],
)  # fmt: skip
def test_bad_patches_are_422_and_change_nothing(
    served: Serving, change: dict[str, Any], says: str
) -> None:
    with served.client() as client:
        account_id = made(client)
        before = client.get(f"/api/v1/accounts/{account_id}").json()
        answer = client.patch(f"/api/v1/accounts/{account_id}", params={"verify": False},
                              json=change)  # fmt: skip
        assert answer.status_code == 422, answer.text
        assert says in answer.json()["error"]
        after = client.get(f"/api/v1/accounts/{account_id}").json()
        assert {k: v for k, v in after.items() if k != "status"} == {
            k: v for k, v in before.items() if k != "status"
        }
        assert client.get("/api/v1/accounts").status_code == 200


@pytest.mark.parametrize(
    "path",
    [f"/api/v1/accounts/{BIG}", f"/api/v1/accounts/{BIG}/status",
     f"/api/v1/accounts/1/messages/{2**32}", f"/api/v1/accounts/1/messages?offset={BIG}",
     f"/api/v1/events?after={BIG}", f"/api/v1/events?account={BIG}", "/api/v1/accounts/0"],
)  # fmt: skip
def test_huge_ids_are_422_not_500(served: Serving, path: str) -> None:
    with served.client() as client:
        answer = client.get(path)
        assert answer.status_code == 422, answer.text
        assert "less than or equal" in answer.text or "greater than" in answer.text


@pytest.mark.parametrize(
    ("route", "payload", "says"),
    [("/api/v1/accounts", body(host="exa..mple.com"), "host"),
     ("/api/v1/verify", body(host="bad host"), "host"),
     ("/api/v1/check", {"host": "exa..mple.com"}, "host"),
     ("/api/v1/accounts", body(proxy="socks5://ünïcode:1"), "proxy")],
)  # fmt: skip
def test_bad_hosts_and_proxies_are_422(
    served: Serving, route: str, payload: dict[str, Any], says: str
) -> None:
    with served.client() as client:
        answer = client.post(route, json=payload)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"].startswith(f"invalid input: {says}")


def test_check_with_security_none_and_no_port_is_a_report(served: Serving) -> None:
    with hostile("echo_secret", secret=SECRET) as port, served.client() as client:
        answer = client.post("/api/v1/check", json={"host": "127.0.0.1", "security": "none",
                                                    "timeout": 2})  # fmt: skip
        assert answer.status_code == 200, answer.text  # port 143 by default: a report
        assert answer.json()["headline"] is not None
        answer = client.post("/api/v1/check", json={
            "host": "127.0.0.1", "port": port, "security": "none", "user": "alice",
            "password": SECRET, "timeout": 2})  # fmt: skip
        assert answer.status_code == 200
        assert answer.json()["headline"] == "AUTH_FAILED"
        assert SECRET not in answer.text


def test_echoed_secret_in_verify_and_in_the_refusal(served: Serving) -> None:
    with hostile("echo_secret", secret=SECRET) as port, served.client() as client:
        settings = body(port=port, security="none")
        verified = client.post("/api/v1/verify", json=settings)
        refused = client.post("/api/v1/accounts", json=settings)
        assert refused.status_code == 422
        assert refused.json()["report"]["headline"] == "AUTH_FAILED"
        for answer in (verified, refused):
            assert SECRET not in answer.text
            assert "***" in answer.text  # the server's words kept, the secret masked


def test_the_token_is_checked_before_a_body_is_read(served: Serving) -> None:
    with served.client(token=None) as anonymous:
        big = b"x" * (2 * 1024 * 1024)
        answer = anonymous.post("/api/v1/accounts", content=big,
                                headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 413  # the length alone refuses it
        answer = anonymous.post("/api/v1/accounts", json=body())
        assert answer.status_code == 401
    with served.client() as client:
        answer = client.post("/api/v1/accounts", content=b"x" * (2 * 1024 * 1024),
                             headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 413
        assert "send less" in answer.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(40):
                yield b"x" * 65536

        answer = client.post("/api/v1/accounts", content=chunks(),
                             headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 413


def test_every_response_carries_the_security_headers(served: Serving) -> None:
    with served.client() as client:
        for path in ("/login", "/livez", "/api/v1/accounts", "/no/such/page"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"


def test_repeated_wrong_web_logins_are_refused_for_a_while(served: Serving) -> None:
    with httpx.Client(base_url=served.url) as browser:
        for _ in range(MAX_FAILURES):
            assert browser.post("/login", data={"token": "isk_wrong"}).status_code == 401
        refused = browser.post("/login", data={"token": served.token})  # even the right one
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0


def test_the_throttle_rule_with_a_clock() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(WINDOW)
    assert throttle.retry_after("b") == 0  # per address
    now[0] += WINDOW
    assert throttle.retry_after("a") == 0  # the window passed
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0


def test_an_abandoned_check_is_cancelled(served: Serving) -> None:
    # A server that never completes the login: the check alone would hold it for 60 s.
    with hostile_server("bye_every_command") as slow:
        client = served.client()
        slow_check = {"host": "127.0.0.1", "port": slow.port, "security": "none", "timeout": 60,
                      "user": "alice", "password": SECRET}  # fmt: skip
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/v1/check", timeout=1.0, json=slow_check)
        client.close()
        deadline = time.monotonic() + 3
        while slow.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not slow.tasks, "the check kept its connection after the client left"


def test_unknown_routes_and_methods_answer_in_the_api_s_shape(served: Serving) -> None:
    with served.client() as client:
        missing = client.get("/api/v1/nothing-here")
        assert missing.status_code == 404
        assert "no such route" in missing.json()["error"]
        wrong = client.put("/api/v1/accounts")
        assert wrong.status_code == 405
        assert "PUT is not allowed" in wrong.json()["error"]
        page = client.get("/no/such/page")  # the UI's own: an HTML page
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "/accounts" in page.text


def test_event_filters_and_folders_are_checked(served: Serving) -> None:
    with served.client() as client:
        bogus = client.get("/api/v1/events", params={"kind": "message.nwe", "wait": 30})
        assert bogus.status_code == 422  # at once, not after waiting 30 s for nothing
        assert "message.new" in bogus.json()["error"]
        assert client.get("/api/v1/events", params={"account": 999}).status_code == 404
        account_id = made(client)
        nope = client.get(f"/api/v1/accounts/{account_id}/messages", params={"folder": "Nope"})
        assert nope.status_code == 404
        assert "no folder 'Nope'" in nope.json()["error"]
        broken = client.post("/api/v1/check", content=b"{not json",
                             headers={"content-type": "application/json"})  # fmt: skip
        assert broken.status_code == 422
        assert "not valid JSON" in broken.json()["error"]
