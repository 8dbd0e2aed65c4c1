"""Webhooks against a local receiver: events delivered signed (verified with the reference
``standardwebhooks`` package), at least once from the outbox; retried with the same webhook-id
while the receiver fails (500, a reset connection, no answer); failed after the last attempt,
the endpoint disabled after days of failures; replay, redelivery, rotation with both secrets
valid; a serve killed -9 in the middle of a delivery delivers it after its restart. What runs
the outbox's SQL runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from imapscope.sandbox import FaultRule
from imapscope.store import AccountSpec, Outcome, Store
from imapscope.webhooks import WebhookService
from imapscope.webhooks import _service as webhooks_service
from tests.conftest import Sandbox
from tests.receivers import Delivery, WebhookReceiver, webhook_receiver
from tests.serving import Serving
from tests.test_api import account, no_secret, wait_for
from tests.test_expect import send
from tests.test_monitors import add_monitor, run_now
from tests.test_serve_cli import start_serve, until

QUICK = (0.2,) * 7  # the retry schedule, in tests: eight attempts within two seconds
SPEC = AccountSpec(email="a@example.test", host="127.0.0.1", port=993, security="tls",
                   username="a")  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


def add_webhook(api: httpx.Client, url: str, **given: Any) -> dict[str, Any]:
    answer = api.post("/api/v1/webhooks", json={"url": url, **given})
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


def verified(secret: str, delivery: Delivery) -> dict[str, Any]:
    """The payload, once the reference implementation has verified its signature."""
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    found: dict[str, Any] = Verifier(secret).verify(delivery.body, headers)
    return found


def idle_account(api: httpx.Client, sandbox: Sandbox) -> int:
    alice: int = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
    wait_for(api, f"/api/v1/accounts/{alice}", lambda a: a["state"] == "idle", timeout=20)
    return alice


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_events_are_delivered_signed_once_each(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        alice = idle_account(api, sandbox)
        hook = add_webhook(api, receiver.url, events=["message.new"], accounts=[alice])
        for i in range(3):
            send(sandbox, f"hooked {i}")
        got = receiver.wait(3)
        shown = wait_for(api, f"/api/v1/webhooks/{hook['id']}",
                         lambda w: w["deliveries"]["delivered"] == 3)  # fmt: skip
        attempts = api.get(f"/api/v1/webhooks/{hook['id']}/attempts").json()
        listed = api.get("/api/v1/webhooks").json()
    payloads = [verified(hook["secret"], d) for d in got]
    assert [p["data"]["subject"] for p in sorted(payloads, key=lambda p: p["data"]["id"])] == [
        f"hooked {i}" for i in range(3)
    ]
    assert {p["type"] for p in payloads} == {"message.new"}
    assert all(p["data"]["account_id"] == alice for p in payloads)
    assert all(p["data"]["envelope"]["from"] == ["noreply@acme.test"] for p in payloads)
    assert sorted(d.headers["webhook-id"] for d in got) == sorted(
        f"evt_{p['data']['id']}" for p in payloads
    )
    assert len(receiver.requests) == 3  # once each
    assert [a["status_code"] for a in attempts] == [204, 204, 204]
    assert shown["deliveries"] == {"pending": 0, "delivered": 3, "failed": 0}
    assert "secret" not in json.dumps(listed)
    assert hook["secret"] not in json.dumps(listed)


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_a_failing_receiver_gets_the_same_message_until_it_takes_it(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imapscope.webhooks._http.TIMEOUT", 1.0)  # "hang" answers after 3 s
    served.webhooks.schedule = QUICK
    receiver.failures = [500, "reset", "hang"]
    with served.client() as api:
        alice = idle_account(api, sandbox)
        hook = add_webhook(api, receiver.url, events=["message.new"])
        send(sandbox, "retried")
        got = receiver.wait(1)
        wait_for(api, f"/api/v1/webhooks/{hook['id']}",
                 lambda w: w["deliveries"]["delivered"] == 1)  # fmt: skip
        attempts = api.get(f"/api/v1/webhooks/{hook['id']}/attempts").json()
        deliveries = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert verified(hook["secret"], got[0])["data"]["subject"] == "retried"
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 4
    assert len(ids) == 1  # the same message every time
    for request in receiver.requests:  # each attempt signed afresh, and valid
        verified(hook["secret"], request)
    assert [a["status_code"] for a in reversed(attempts)] == [500, None, None, 204]
    assert attempts[-2]["outcome"].startswith("the connection was closed or reset")
    assert attempts[1]["outcome"].startswith("no answer within 1 s")
    assert deliveries[0]["status"] == "delivered"
    assert deliveries[0]["attempts"] == 4
    assert alice


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_replay_and_redeliver_send_again_what_was_asked(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        idle_account(api, sandbox)
        hook = add_webhook(api, receiver.url, events=["message.new"])
        for i in range(5):
            send(sandbox, f"replayed {i}")
        first = sorted(verified(hook["secret"], d)["data"]["id"] for d in receiver.wait(5))
        replay = api.post(f"/api/v1/webhooks/{hook['id']}/replay",
                          json={"after_event": first[1]})  # fmt: skip
        again = receiver.wait(8)[5:]
        one = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()[-1]
        api.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{one['id']}/redeliver")
        redelivered = receiver.wait(9)[8]
    assert replay.json() == {"queued": 3}
    assert sorted(verified(hook["secret"], d)["data"]["id"] for d in again) == first[2:]
    assert redelivered.headers["webhook-id"] == f"evt_{one['event_id']}"


def test_rotation_signs_with_both_secrets_for_a_while(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        idle_account(api, sandbox)
        hook = add_webhook(api, receiver.url, events=["message.new"])
        rotated = api.post(f"/api/v1/webhooks/{hook['id']}/rotate").json()
        send(sandbox, "rotated")
        got = receiver.wait(1)[0]
        shown = api.get(f"/api/v1/webhooks/{hook['id']}").json()
    assert rotated["secret"] != hook["secret"]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verified(rotated["secret"], got) == verified(hook["secret"], got)
    assert shown["rotating_until"] == rotated["old_secret_valid_until"]


def test_a_test_message_says_how_it_went(served: Serving, receiver: WebhookReceiver) -> None:
    with served.client() as api:
        good = add_webhook(api, receiver.url)
        dead = add_webhook(api, "http://127.0.0.1:9/hooks?token=sekrit-token-123")
        ok = api.post(f"/api/v1/webhooks/{good['id']}/test")
        failed = api.post(f"/api/v1/webhooks/{dead['id']}/test")
        listed = api.get("/api/v1/webhooks").json()
    assert ok.status_code == 200
    assert ok.json()["status"] == 204
    assert verified(good["secret"], receiver.deliveries[0])["type"] == "webhook.test"
    assert failed.status_code == 502
    assert "could not be reached" in failed.json()["error"]
    assert dead["url"] == "http://127.0.0.1:9/hooks?***"
    assert "sekrit-token-123" not in failed.text + json.dumps(listed)


@pytest.mark.parametrize(
    ("body", "said"),
    [({"url": "ftp://example.test/x"}, "is http:// or https:// with a host, not 'ftp'"),
     ({"url": "https://"}, "with a host"),
     ({"url": "https://h.test", "events": ["message.nope"]}, "unknown event kind 'message.nope'"),
     ({"url": "https://h.test", "accounts": [999]}, "no account with id 999"),
     ({"url": "https://h.test", "colour": "red"}, "colour")],
)  # fmt: skip
def test_bad_webhooks_are_refused(served: Serving, body: dict[str, Any], said: str) -> None:
    with served.client() as api:
        answer = api.post("/api/v1/webhooks", json=body)
        assert api.get("/api/v1/webhooks").json() == []
    assert answer.status_code == 422, answer.text
    assert said in answer.json()["error"]


def test_bad_replays_and_unknown_ids_are_refused(
    served: Serving, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        hook = add_webhook(api, receiver.url)
        neither = api.post(f"/api/v1/webhooks/{hook['id']}/replay", json={})
        naive = api.post(f"/api/v1/webhooks/{hook['id']}/replay",
                         json={"since": "2026-12-01T08:00:00"})  # fmt: skip
        status = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"status": "x"})
        missing = api.get("/api/v1/webhooks/999")
        no_delivery = api.post(f"/api/v1/webhooks/{hook['id']}/deliveries/999/redeliver")
    assert neither.status_code == 422
    assert "give after_event (an event id) or since (a time)" in neither.json()["error"]
    assert naive.status_code == 422
    assert "time zone" in naive.json()["error"]
    assert status.status_code == 422
    assert missing.status_code == 404
    assert "no webhook with id 999" in missing.json()["error"]
    assert no_delivery.status_code == 404


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_the_last_failure_fails_the_delivery_and_days_of_them_disable_the_endpoint(
    tmp_path: Path,
) -> None:
    """The store's rules, with hand-made times: eight attempts then failed; an endpoint with
    nothing but failures for five days is disabled (its deliveries wait), and enabling it
    clears that."""

    async def main() -> None:
        store = await Store.open(tmp_path / "data")
        try:
            t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
            added = await store.add_account(_spec(), "pw")
            hook = await store.add_webhook(
                "https://r.test/h", "https://r.test/h", "whsec_" + "A" * 32
            )
            await store.add_event(added.id, "message.new", {"uid": 1})
            assert await store.fan_out(now=t0) == 1
            now = t0
            for attempt in range(8):
                (claimed,) = await store.claim_deliveries("w", hook.id, now=now, hold=60)
                await store.finish_deliveries(
                    "w", [Outcome(claimed[0].id, False, 500, 3, "no")], now=now
                )  # fmt: skip
                status = (await store.deliveries(hook.id))[0]
                assert status.status == ("failed" if attempt == 7 else "pending")
                if status.next_at is not None:
                    now = status.next_at
            assert [a.status_code for a in await store.attempts(hook.id)] == [500] * 8
            assert (await store.webhook(hook.id)).enabled  # failing for 1.7 days: not yet
            await store.add_event(added.id, "message.new", {"uid": 2})
            later = t0 + dt.timedelta(days=5, hours=1)
            await store.fan_out(now=later)
            (claimed,) = await store.claim_deliveries("w", hook.id, now=later, hold=60)
            await store.finish_deliveries(
                "w", [Outcome(claimed[0].id, False, None, 10_000, "no answer")], now=later
            )  # fmt: skip
            disabled = await store.webhook(hook.id)
            assert not disabled.enabled
            assert "every delivery failed since 2026-12-01 00:00 UTC" in disabled.disabled_reason
            assert await store.claim_deliveries("w", hook.id, now=later, hold=60) == []
            enabled = await store.update_webhook(hook.id, enabled=True)
            assert (enabled.enabled, enabled.disabled_reason, enabled.failing_since) == (
                True, "", None,
            )  # fmt: skip
        finally:
            await store.close()

    import asyncio  # noqa: PLC0415

    asyncio.run(main())


def _spec() -> Any:
    from imapscope.store import AccountSpec  # noqa: PLC0415

    return AccountSpec(email="a@example.test", host="127.0.0.1", port=993, security="tls",
                       username="a")  # fmt: skip


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_serve_killed_during_a_delivery_delivers_it_after_restart(
    sandbox: Sandbox, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    data = tmp_path / "serve"
    proc, lines = start_serve(data, sandbox.ca_file)
    assert proc.stdout is not None
    lines += [proc.stdout.readline(), proc.stdout.readline()]
    token = lines[2].strip()
    url = lines[0].split("web UI ")[1].split("/ ")[0]
    headers = {"Authorization": f"Bearer {token}"}
    receiver.failures = ["hang"]  # the first attempt is in flight when serve dies
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            until("serve", lambda: _ready(api))
            alice = idle_account(api, sandbox)
            hook = add_webhook(api, receiver.url, events=["message.new"], accounts=[alice])
            send(sandbox, "in flight")
            until("the first attempt", lambda: receiver.requests)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
        send(sandbox, "while serve was down")
        proc, lines = start_serve(data, sandbox.ca_file)
        url = lines[0].split("web UI ")[1].split("/ ")[0]
        got = receiver.wait(2, timeout=30)
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            until("serve", lambda: _ready(api))
            attempts = api.get(f"/api/v1/webhooks/{hook['id']}/attempts").json()
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    subjects = sorted(verified(hook["secret"], d)["data"]["subject"] for d in got)
    assert subjects == ["in flight", "while serve was down"]
    first = receiver.requests[0].headers["webhook-id"]
    assert [d.headers["webhook-id"] for d in got].count(first) == 1  # the same message, again
    assert all(a["status_code"] == 204 for a in attempts)  # the killed attempt left no record
    no_secret(json.dumps(attempts))


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.usefixtures("database")  # the outbox's SQL, on both
def test_incidents_of_monitors_are_events_too(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    """A monitor of any server (no account) opens and resolves an incident: both are events,
    delivered to the webhooks that want them, with the code and the fix."""
    with served.client() as api:
        hook = add_webhook(api, receiver.url, events=["incident.opened", "incident.resolved"])
        monitor = add_monitor(api, name="any IMAP", host="127.0.0.1",
                              port=sandbox.server.tls_port, security="tls",
                              rules={"fail_after": 1, "recover_after": 1})  # fmt: skip
        sandbox.server.faults.add(FaultRule("bye", "GREETING", text="Too busy", count=1))
        run_now(api, monitor["id"])
        run_now(api, monitor["id"])
        got = [verified(hook["secret"], d) for d in receiver.wait(2)]
        events = api.get("/api/v1/events", params={"kind": "incident.opened"}).json()["events"]
    opened, resolved = sorted(got, key=lambda p: p["data"]["id"])
    assert opened["type"] == "incident.opened"
    assert resolved["type"] == "incident.resolved"
    assert opened["data"]["account_id"] is None  # a monitor of any server
    assert opened["data"]["monitor"] == monitor["id"]
    assert opened["data"]["code"] == "GREETING_BYE"
    assert opened["data"]["fix"]
    assert resolved["data"]["incident"] == opened["data"]["incident"]
    assert resolved["data"]["seconds"] >= 0
    assert [e["account_id"] for e in events] == [None]


def test_metrics_count_deliveries_by_endpoint_and_status(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        hook = add_webhook(api, receiver.url, events=["folder.synced"])
        idle_account(api, sandbox)  # its first sync: one folder.synced per folder
        path = f"/api/v1/webhooks/{hook['id']}"
        wait_for(api, path, lambda w: w["deliveries"]["delivered"] >= 1)
        api.patch(path, json={"enabled": False})
        for _ in range(50):  # a scrape between two equal readings (deliveries may be in flight)
            before = api.get(path).json()["deliveries"]
            text = api.get("/metrics").text
            if api.get(path).json()["deliveries"] == before:
                break
    key = f'webhook_id="{hook["id"]}"'
    assert f"imapscope_webhook_enabled{{{key}}} 0.0" in text
    for status in ("pending", "delivered", "failed"):
        series = f'imapscope_webhook_deliveries{{status="{status}",{key}}}'
        assert f"{series} {before[status]:.1f}" in text
    assert before["delivered"] >= 1


def test_with_no_endpoint_the_service_does_not_ask_the_outbox_at_each_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No endpoint enabled (the default): events written do not wake the webhook service (each
    wake-up was a query for the endpoints, once per group commit: 10,000 accounts connecting
    write thousands); an endpoint added in this process wakes it at once. POLL is raised so
    that only a wake-up can explain a second look."""
    monkeypatch.setattr(webhooks_service, "POLL", 3600.0)

    async def main() -> None:
        store = await Store.open(tmp_path)
        looked = 0
        fan_out = store.fan_out

        async def counted(**given: Any) -> int | None:
            nonlocal looked
            looked += 1
            return await fan_out(**given)

        store.fan_out = counted  # type: ignore[method-assign]
        service = WebhookService(store, "w1")
        await service.start()
        try:
            account_id = (await store.add_account(SPEC, "secret-pw")).id
            for i in range(20):
                await store.add_event(account_id, "message.new", {"n": i})  # fires its pulse
                await asyncio.sleep(0.01)
            assert looked == 1, f"{looked} looks at the outbox for 20 events"  # the first
            await store.add_webhook("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook", "s3cr3t")
            async with asyncio.timeout(30):  # well before POLL: only the pulse can wake it
                while looked == 1:
                    await asyncio.sleep(0.01)
        finally:
            await service.stop()
            await store.close()

    asyncio.run(main())
