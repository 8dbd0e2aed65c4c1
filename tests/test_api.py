"""The REST API against a real `serve` (uvicorn on loopback) whose accounts sync from the
sandbox: every endpoint, bad input, missing and invalid tokens, and no secret in any answer."""

from __future__ import annotations

import os
import smtplib
import socket
import threading
import time
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from imapscope.store import MessageMeta, Store
from tests.conftest import PASSWORD, Sandbox
from tests.servers.rig import free_port
from tests.serving import Serving

# Every test here runs on SQLite and on PostgreSQL (the ``database`` fixture).
pytestmark = pytest.mark.usefixtures("database")

WRONG = "wrong-password-api-77"


def account(sandbox: Sandbox, **change: Any) -> dict[str, Any]:
    body = {
        "email": "alice@example.test", "name": "Alice", "host": "localhost",
        "port": sandbox.server.tls_port, "security": "tls", "username": "alice",
        "secret": PASSWORD, "poll_interval": 60,
    }  # fmt: skip
    return body | change


def wait_for(client: httpx.Client, path: str, test: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = client.get(path).json()
        if test(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out on {path}: last answer {found}")
        time.sleep(0.05)


def no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert WRONG not in text


def test_tokens_are_required_everywhere_but_the_probes(served: Serving) -> None:
    with served.client(token=None) as anonymous:
        assert anonymous.get("/livez").json() == {"status": "ok"}
        # Orchestrator probes cannot send a token; /readyz tells a count and which process.
        assert anonymous.get("/readyz").json() == {
            "status": "ready",
            "accounts": 0,
            "pid": os.getpid(),
        }  # (serve runs in this test's process)
        for method, path in [
            ("GET", "/api/v1/accounts"), ("POST", "/api/v1/accounts"),
            ("GET", "/api/v1/accounts/1"), ("PATCH", "/api/v1/accounts/1"),
            ("DELETE", "/api/v1/accounts/1"), ("GET", "/api/v1/events"),
            ("POST", "/api/v1/check"), ("GET", "/api/v1/tokens"),
            ("GET", "/api/v1/accounts/1/messages"), ("GET", "/api/v1/openapi.json"),
        ]:  # fmt: skip
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert "Authorization: Bearer" in answer.json()["error"]
            assert answer.headers["www-authenticate"] == "Bearer"
    with served.client(token="isk_not-a-real-token") as wrong:
        answer = wrong.get("/api/v1/accounts")
        assert answer.status_code == 401
        assert "not valid" in answer.json()["error"]
    with served.client() as client:
        ready = {"status": "ready", "accounts": 0, "pid": os.getpid()}
        assert client.get("/readyz").json() == ready
        spec = client.get("/api/v1/openapi.json").json()
        assert "/api/v1/accounts/{account_id}/messages/{uid}" in spec["paths"]
        assert "/api/v1/openapi.json" not in spec["paths"]
        assert spec["openapi"].startswith("3.")
        assert client.get("/api/v1/docs").status_code == 404  # no CDN-loaded Swagger page


def test_accounts_crud_verify_state_errors_folders_messages_events(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as client:
        # Verify-before-save refuses a wrong password with the check's finding, saves nothing.
        refused = client.post("/api/v1/accounts", json=account(sandbox, secret=WRONG))
        assert refused.status_code == 422
        assert refused.json()["report"]["headline"] == "AUTH_FAILED"
        assert "force" in refused.json()["error"]
        assert client.get("/api/v1/accounts").json() == []
        no_secret(refused.text)

        created = client.post("/api/v1/accounts", json=account(sandbox))
        assert created.status_code == 201, created.text
        a = created.json()
        assert a["email"] == "alice@example.test"
        assert "secret" not in a
        no_secret(created.text)
        path = f"/api/v1/accounts/{a['id']}"

        # It reaches idle; status, folders and messages follow.
        wait_for(client, path, lambda x: x["state"] == "idle")
        status = client.get(f"{path}/status").json()
        assert status["health"] == "ok"
        assert status["last_sync"] is not None
        folders = {f["name"]: f for f in client.get(f"{path}/folders").json()}
        assert folders["INBOX"]["messages"] == 12
        # What the server counted when the sync ended: equal, once every folder is synced.
        assert all(f["server_messages"] == f["messages"] for f in folders.values())
        assert all(f["synced"] for f in folders.values())
        assert status["messages"] == sum(f["messages"] for f in folders.values())
        assert status["folders"] == len(folders)
        page = client.get(f"{path}/messages", params={"folder": "INBOX", "limit": 5}).json()
        assert page["total"] == 12
        assert len(page["messages"]) == 5
        uid = page["messages"][0]["uid"]
        subject = page["messages"][0]["envelope"]["subject"]
        matching = client.get(f"{path}/messages", params={"q": subject[:8]}).json()
        assert uid in [m["uid"] for m in matching["messages"]]
        inbox = {"folder": "INBOX"}
        unseen = client.get(f"{path}/messages", params=inbox | {"unseen": True}).json()["total"]
        seen = client.get(f"{path}/messages", params=inbox | {"unseen": False}).json()["total"]
        assert unseen + seen == 12
        assert 0 < unseen < 12  # the demo mail has both

        # One message, its text fetched live from the server.
        one = client.get(f"{path}/messages/{uid}", params={"folder": "INBOX"})
        assert one.status_code == 200
        assert f"Subject: {subject}"[:20] in one.json()["raw"]
        assert client.get(f"{path}/messages/999", params={"folder": "INBOX"}).status_code == 404

        # Events from a cursor, with wait: a delivery shows up as message.new (the first sync
        # was one folder.synced per folder).
        first = client.get("/api/v1/events", params={"limit": 1000}).json()
        assert {"account.state", "folder.added", "folder.synced"} <= {
            e["kind"] for e in first["events"]
        }
        cursor = first["next"]
        _deliver(sandbox, "hello over the API")
        new = client.get(
            "/api/v1/events", params={"after": cursor, "kind": "message.new", "wait": 5}
        ).json()
        assert [e["data"]["subject"] for e in new["events"]] == ["hello over the API"]
        assert new["next"] > cursor
        # Nothing new after the cursor but what came since (the account going idle again).
        later = client.get("/api/v1/events", params={"after": new["next"]}).json()["events"]
        assert [e["kind"] for e in later if e["kind"] != "account.state"] == []

        # Verify the stored settings; run a check against any server.
        verified = client.post(f"{path}/verify").json()
        assert verified["status"] == "ok"
        no_secret(str(verified))
        check = client.post(
            "/api/v1/check",
            json={"host": "localhost", "port": sandbox.server.tls_port, "security": "tls",
                  "user": "alice", "password": WRONG},
        ).json()  # fmt: skip
        assert check["headline"] == "AUTH_FAILED"
        no_secret(str(check))

        # Break the password (forced past verification): auth_error and an error entry.
        broken = client.patch(path, params={"force": True}, json={"secret": WRONG})
        assert broken.status_code == 200, broken.text
        wait_for(client, path, lambda x: x["state"] == "auth_error")
        errors = client.get(f"{path}/errors").json()
        assert errors[0]["code"] == "AUTH_FAILED"
        halted = wait_for(client, f"{path}/status", lambda x: x["halted"] is not None)
        assert halted["next_attempt"] is None
        assert "refused logins in a row" in halted["halted"]
        assert client.get(path).json()["health"] == "failing"
        no_secret(client.get(f"{path}/errors").text, client.get(path).text)

        # Pause and resume; edit back; delete removes it and its data.
        assert client.post(f"{path}/pause").json()["paused"] is True
        wait_for(client, path, lambda x: x["state"] == "paused")
        assert client.post(f"{path}/resume").json()["paused"] is False
        fixed = client.patch(path, json={"secret": PASSWORD, "name": "Alice again"})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["name"] == "Alice again"
        wait_for(client, path, lambda x: x["state"] == "idle")
        assert client.delete(path).status_code == 204
        assert client.get(path).status_code == 404
        assert client.get("/api/v1/accounts").json() == []


def test_bad_input_gets_4xx_saying_what_to_fix(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as client:
        answer = client.post("/api/v1/accounts", json={"email": "x@example.test"})
        assert answer.status_code == 422
        assert "host: Field required" in answer.json()["error"]
        answer = client.post("/api/v1/accounts", json=account(sandbox, port=70000))
        assert answer.status_code == 422
        assert "port" in answer.json()["error"]
        answer = client.post("/api/v1/accounts", json=account(sandbox, security="ssl"))
        assert answer.status_code == 422
        assert "security" in answer.json()["error"]
        answer = client.post("/api/v1/accounts", json=account(sandbox, email="no-at-sign"))
        assert answer.status_code == 400
        assert "has no '@'" in answer.json()["error"]
        answer = client.post("/api/v1/accounts", json=account(sandbox, extra="field"))
        assert answer.status_code == 422
        assert "extra" in answer.json()["error"]
        # No verification, then a duplicate.
        assert client.post("/api/v1/accounts", params={"verify": False},
                           json=account(sandbox)).status_code == 201  # fmt: skip
        dup = client.post("/api/v1/accounts", params={"verify": False}, json=account(sandbox))
        assert dup.status_code == 409
        assert "already exists" in dup.json()["error"]
        for path in ("/api/v1/accounts/999", "/api/v1/accounts/999/errors",
                     "/api/v1/accounts/999/messages", "/api/v1/accounts/999/status"):  # fmt: skip
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert "no account with id 999" in missing.json()["error"]
        assert client.get("/api/v1/events", params={"limit": 0}).status_code == 422
        assert client.get("/api/v1/accounts/1/messages", params={"limit": 501}).status_code == 422
        assert client.patch("/api/v1/accounts/1", json={"poll_interval": 1}).status_code == 422
        assert client.delete("/api/v1/tokens/999").status_code == 404


def test_tokens_create_list_revoke(served: Serving) -> None:
    with served.client() as client:
        made = client.post("/api/v1/tokens", json={"name": "ci"})
        assert made.status_code == 201
        token = made.json()["token"]
        listed = client.get("/api/v1/tokens").json()
        assert [t["name"] for t in listed] == ["first", "ci"]
        assert "token" not in str(listed).replace("'token'", "")  # never shown again
        with served.client(token=token) as other:
            assert other.get("/api/v1/accounts").status_code == 200
        assert client.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 204
        with served.client(token=token) as other:
            assert other.get("/api/v1/accounts").status_code == 401
        assert client.post("/api/v1/tokens", json={"name": ""}).status_code == 422


def _deliver(sandbox: Sandbox, subject: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "bob@example.test", "alice@x", subject
    message.set_content("hi")
    with smtplib.SMTP("127.0.0.1", sandbox.server.smtp_port or 0) as smtp:
        smtp.send_message(message)


def test_an_oauth2_account_syncs_and_a_rejected_token_is_named(
    served: Serving, sandbox: Sandbox
) -> None:
    """XOAUTH2 end to end: the sandbox takes the user's secret as the bearer token."""
    with served.client() as client:
        body = account(sandbox, auth="oauth2", secret=PASSWORD)
        created = client.post("/api/v1/accounts", json=body)
        assert created.status_code == 201, created.text
        path = f"/api/v1/accounts/{created.json()['id']}"
        wait_for(client, path, lambda x: x["state"] == "idle")
        assert client.patch(path, params={"force": True}, json={"secret": WRONG}).status_code == 200
        wait_for(client, path, lambda x: x["state"] == "auth_error")
        codes = {e["code"] for e in client.get(f"{path}/errors").json()}
        assert codes == {"OAUTH_TOKEN_REJECTED"}
        no_secret(client.get(f"{path}/errors").text, client.get(path).text)


def seed_message(served: Serving, account_id: int) -> None:
    """UID 7 in INBOX, as if an earlier sync had stored it."""

    async def seed(store: Store) -> None:
        await store.set_folders(account_id, ["INBOX"])
        inbox = (await store.folders(account_id))[0]
        meta = MessageMeta(7, (), None, 10, {"subject": "kept"})
        await store.apply_folder(inbox.id, uidvalidity=1, uidnext=8, new=[meta])

    served.call(seed)


def test_a_live_fetch_from_an_unreachable_server_is_502_with_the_finding(
    served: Serving, sandbox: Sandbox
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        port = closed.getsockname()[1]
        with served.client() as client:
            made = client.post("/api/v1/accounts", params={"verify": False},
                               json=account(sandbox, port=port, security="none"))  # fmt: skip
            account_id = made.json()["id"]
            seed_message(served, account_id)  # known from an earlier sync
            answer = client.get(f"/api/v1/accounts/{account_id}/messages/7")
            assert answer.status_code == 502
            assert answer.json()["code"] == "TCP_REFUSED"
            assert "did not give the message" in answer.json()["error"]
            meta_only = client.get(
                f"/api/v1/accounts/{account_id}/messages/7", params={"body": False}
            )
            assert meta_only.json()["envelope"]["subject"] == "kept"
            no_secret(answer.text)


def test_a_server_that_hangs_up_before_greeting_is_502_not_500(
    served: Serving, sandbox: Sandbox
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:  # accepts, says nothing, closes
            for _ in range(2):
                conn, _ = listener.accept()
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        with served.client() as client:
            made = client.post("/api/v1/accounts", params={"verify": False, "force": True},
                               json=account(sandbox, port=listener.getsockname()[1],
                                            security="none", poll_interval=3600))  # fmt: skip
            account_id = made.json()["id"]
            served.call(lambda store: store.set_paused(account_id, True))  # only the fetch calls
            seed_message(served, account_id)
            answer = client.get(f"/api/v1/accounts/{account_id}/messages/7")
            assert answer.status_code == 502, answer.text
            assert answer.json()["code"] == "SERVER_TEMPORARY_ERROR"


def test_the_account_list_pages_and_filters(served: Serving, sandbox: Sandbox) -> None:
    """Five accounts: three that sync, two whose server refuses. The list comes whole by
    default, or a page at a time (``limit``, ``after``) following the ``Link`` header, with
    ``X-Total-Count``; ``state`` and ``q`` filter, the same on every page."""
    refused_port = free_port()
    with served.client() as client:
        for n in range(5):
            change: dict[str, Any] = {"email": f"u{n}_x@example.test"}
            if n >= 3:
                change |= {
                    "port": refused_port,
                    "host": "127.0.0.1",
                    "email": f"down{n}@example.test",
                }
            created = client.post("/api/v1/accounts", params={"verify": False},
                                  json=account(sandbox, **change))  # fmt: skip
            assert created.status_code == 201, created.text
        whole = client.get("/api/v1/accounts")
        assert len(whole.json()) == 5
        assert whole.headers["X-Total-Count"] == "5"
        assert "Link" not in whole.headers
        ids = [a["id"] for a in whole.json()]

        seen: list[int] = []
        url: str | None = "/api/v1/accounts?limit=2"
        while url:
            page = client.get(url)
            assert page.status_code == 200
            assert page.headers["X-Total-Count"] == "5"
            assert len(page.json()) <= 2
            seen += [a["id"] for a in page.json()]
            link = page.headers.get("Link")
            url = link.split(">")[0].lstrip("<") if link else None
        assert seen == ids  # every account once, in order, over three pages

        idle = wait_for(client, "/api/v1/accounts?state=idle",
                        lambda found: len(found) == 3, timeout=30)  # fmt: skip
        assert {a["email"] for a in idle} == {f"u{n}_x@example.test" for n in range(3)}
        down = client.get("/api/v1/accounts", params={"q": "DOWN", "limit": 1})
        assert down.headers["X-Total-Count"] == "2"
        assert [a["email"] for a in down.json()] == ["down3@example.test"]
        assert 'rel="next"' in down.headers["Link"]
        assert "q=DOWN" in down.headers["Link"]  # the filter carries over to the next page
        # LIKE's wildcards are literal: "_x" matches the three with "_x", not every "x".
        assert client.get("/api/v1/accounts", params={"q": "_x"}).headers["X-Total-Count"] == "3"
        assert client.get("/api/v1/accounts", params={"after": ids[-1]}).json() == []
        biggest = client.get("/api/v1/accounts", params={"limit": 1000})  # the largest page
        assert biggest.status_code == 200, biggest.text
        assert [a["id"] for a in biggest.json()] == ids
        assert "Link" not in biggest.headers
        # The largest id the API takes finds nothing, on PostgreSQL too (64-bit columns).
        assert client.get("/api/v1/accounts", params={"after": 2**63 - 1}).json() == []
        assert client.get(f"/api/v1/accounts/{2**63 - 1}").status_code == 404
        for bad in ({"limit": 0}, {"limit": 1001}, {"after": -1}, {"state": "asleep"},
                    {"q": "x" * 201}):  # fmt: skip
            answer = client.get("/api/v1/accounts", params=bad)
            assert answer.status_code == 422, bad
            assert next(iter(bad)) in answer.json()["error"]
