"""Monitors end to end, in `serve` against the sandbox: the check ladder on schedule, a fault
injected at runtime gives exactly one incident and one notification per channel (an e-mail
through Apprise to an aiosmtpd sink, a signed webhook to a local receiver), clearing it gives
one recovery; history, statistics, channels' logs and bad input."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from imapscope.sandbox import FaultRule
from tests.conftest import PASSWORD, Sandbox
from tests.receivers import SmtpSink, WebhookReceiver, smtp_sink, webhook_receiver
from tests.serving import Serving
from tests.test_api import WRONG, account, no_secret, wait_for
from tests.test_metrics import samples

pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as found:
        yield found


def mail_channel(sink: SmtpSink) -> dict[str, str]:
    url = f"mailto://127.0.0.1:{sink.port}?from=alerts@example.com&to=ops@example.com"
    return {"name": "ops mail", "url": url}


def hook_channel(receiver: WebhookReceiver) -> dict[str, str]:
    return {"name": "hook", "kind": "webhook", "url": receiver.url}


def add_monitor(api: httpx.Client, **given: Any) -> dict[str, Any]:
    """A monitor that runs when the test says so (its interval is an hour), after its first
    run (at once, by itself)."""
    answer = api.post("/api/v1/monitors",
                      json={"name": "alice's mailbox", "interval": 3600} | given)  # fmt: skip
    assert answer.status_code == 201, answer.text
    monitor: dict[str, Any] = answer.json()
    path = f"/api/v1/monitors/{monitor['id']}/runs"
    assert len(wait_for(api, path, lambda r: len(r) >= 1, timeout=30)) == 1
    return monitor


def run_now(api: httpx.Client, monitor_id: int) -> dict[str, Any]:
    """Run the monitor now (POST .../run) and wait for that run; the run."""
    path = f"/api/v1/monitors/{monitor_id}/runs?limit=5000"
    before = len(api.get(path).json())
    assert api.post(f"/api/v1/monitors/{monitor_id}/run").status_code == 200
    runs = wait_for(api, path, lambda r: len(r) > before, timeout=30)
    assert len(runs) == before + 1, [(r["at"], r["late_ms"], r["status"]) for r in runs]
    newest: dict[str, Any] = runs[0]
    return newest


def test_a_login_failure_gives_one_incident_and_one_notification_per_channel(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver, sink: SmtpSink
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()
        mail = api.post("/api/v1/channels", json=mail_channel(sink)).json()
        hook = api.post("/api/v1/channels", json=hook_channel(receiver)).json()
        assert hook["signing_secret"].startswith("whsec_")
        assert "signing_secret" not in api.get(f"/api/v1/channels/{hook['id']}").json()
        monitor = add_monitor(api, account_id=alice["id"], channels=[mail["id"], hook["id"]])
        path = f"/api/v1/monitors/{monitor['id']}"
        assert api.get(path).json()["state"] == "up"

        fault = sandbox.server.faults.add(FaultRule(
            action="no", command="AUTHENTICATE", code="AUTHENTICATIONFAILED",
            text="Authentication failed.",
        ))  # fmt: skip
        assert run_now(api, monitor["id"])["code"] == "AUTH_FAILED"
        assert api.get(path).json()["state"] == "up"  # one failure is not an incident
        run_now(api, monitor["id"])
        down = api.get(path).json()
        assert (down["state"], down["code"]) == ("down", "AUTH_FAILED")
        receiver.wait(1)
        sink.wait(1)
        sandbox.server.faults.clear(fault.id)
        run_now(api, monitor["id"])
        assert api.get(path).json()["state"] == "down"  # one success does not resolve it
        run_now(api, monitor["id"])
        assert api.get(path).json()["state"] == "up"
        receiver.wait(2)
        sink.wait(2)
        # One more run, up, and a moment: nothing more is sent (no second recovery).
        run_now(api, monitor["id"])
        time.sleep(1)
        hooks, mails = list(receiver.deliveries), list(sink.messages)
        up_key = ("imapscope_monitor_up", frozenset({("monitor_id", str(monitor["id"]))}))
        up = samples(api.get("/metrics").text)[up_key]

        incidents = api.get(f"{path}/incidents").json()
        runs = api.get(f"{path}/runs?limit=100").json()
        stats = api.get(f"{path}/stats").json()
        log = api.get(f"/api/v1/channels/{hook['id']}/notifications").json()
        metrics = samples(api.get("/metrics").text)

    # Exactly one incident, opened and resolved, named as check names it.
    assert len(incidents) == 1
    assert incidents[0]["codes"] == ["AUTH_FAILED"]
    assert incidents[0]["resolved"] is not None
    assert incidents[0]["duration_s"] > 0
    # One notification each way per channel, and no more.
    assert len(hooks) == 2
    assert len(mails) == 2
    verifier = Webhook(hook["signing_secret"])
    payloads = [verifier.verify(d.body, d.headers) for d in hooks]  # raises when forged
    assert [p["type"] for p in payloads] == ["incident.opened", "incident.resolved"]
    opened = payloads[0]["data"]
    assert opened["code"] == "AUTH_FAILED"
    assert opened["monitor"] == {"id": monitor["id"], "name": "alice's mailbox", "group": ""}
    assert opened["fix"]
    assert opened["incident"] == incidents[0]["id"]
    assert opened["link"].endswith(f"/monitors/{monitor['id']}")
    assert hooks[0].headers["webhook-id"] != hooks[1].headers["webhook-id"]
    assert mails[0]["Subject"] == "DOWN alice's mailbox: AUTH_FAILED"
    assert mails[1]["Subject"].startswith("RECOVERED alice's mailbox after ")
    text = mails[0].get_body(preferencelist=("plain",))
    assert text is not None
    assert "Fix:" in text.get_content()
    # History: every run with its steps; failures carry the code; uptime below 100 %.
    statuses = [r["status"] for r in runs]
    assert statuses == ["ok", "ok", "ok", "fail", "fail", "ok"]  # newest first
    failed = next(r for r in runs if r["status"] == "fail")
    assert failed["code"] == "AUTH_FAILED"
    assert any(s["name"] == "tls" and s["status"] == "pass" for s in failed["steps"])
    day = stats["24h"]
    assert day["runs"] == len(runs)
    assert day["failures"] == statuses.count("fail")
    assert 0 < day["uptime"] < 100
    assert day["steps"]["total"]["n"] == len(runs)
    assert [n["status"] for n in log] == ["sent", "sent"]
    # /metrics says the same: up now, the failed runs, step times, nothing open, both sent.
    key = str(monitor["id"])
    assert up == 1
    fails = metrics["imapscope_monitor_runs_last_hour",
                    frozenset({("monitor_id", key), ("status", "fail")})]  # fmt: skip
    assert fails == statuses.count("fail")
    by_code = frozenset({("monitor_id", key), ("code", "AUTH_FAILED")})
    assert metrics["imapscope_monitor_failures_last_hour", by_code] == 2
    every = frozenset({("monitor_id", key), ("step", "total"), ("le", "+Inf")})
    assert metrics["imapscope_monitor_step_seconds_bucket", every] == len(runs)
    assert metrics["imapscope_incidents_open", frozenset()] == 0
    sent = frozenset({("channel_id", str(hook["id"])), ("status", "sent")})
    assert metrics["imapscope_notifications", sent] == 2
    # The password is nowhere: not in what was sent, nor in the API's answers.
    no_secret(*(d.body.decode() for d in hooks), *(m.as_string() for m in mails),
              json.dumps([incidents, runs, log]))  # fmt: skip


def test_a_failing_channel_is_retried_and_its_failures_are_seen(
    served: Serving, receiver: WebhookReceiver
) -> None:
    receiver.failures = [500]  # the first attempt fails; the retry gets through
    with served.client() as api:
        hook = api.post("/api/v1/channels", json=hook_channel(receiver)).json()
        # A monitor of a server that refuses connections: down at its first run.
        monitor = add_monitor(api, host="127.0.0.1", port=1, security="tls",
                              channels=[hook["id"]], rules={"fail_after": 1})  # fmt: skip
        assert api.get(f"/api/v1/monitors/{monitor['id']}").json()["state"] == "down"
        log = wait_for(api, f"/api/v1/channels/{hook['id']}/notifications",
                       lambda n: n and n[0]["attempts"] == 1, timeout=20)  # fmt: skip
        assert log[0]["status"] == "pending"
        assert "answered 500" in log[0]["last_error"]
        # The retry is 30 s away; make it due now rather than wait.
        served.call(_due_now)
        served.call(lambda _store: _wake(served))
        log = wait_for(api, f"/api/v1/channels/{hook['id']}/notifications",
                       lambda n: n[0]["status"] == "sent", timeout=20)  # fmt: skip
    assert log[0]["attempts"] == 2
    assert log[0]["last_error"] == ""
    (delivery,) = receiver.deliveries
    assert json.loads(delivery.body)["data"]["code"] == "TCP_REFUSED"


async def _due_now(store: Any) -> None:
    from sqlalchemy import update  # noqa: PLC0415

    from imapscope.store._models import Job  # noqa: PLC0415

    async with store._session() as s:
        await s.execute(update(Job).where(Job.kind == "notify", Job.done.is_(None))
                        .values(run_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        await s.commit()


async def _wake(served: Serving) -> None:
    served.monitors.wake()


def test_send_a_test_notification(served: Serving, sink: SmtpSink) -> None:
    with served.client() as api:
        mail = api.post("/api/v1/channels", json=mail_channel(sink)).json()
        answer = api.post(f"/api/v1/channels/{mail['id']}/test")
        assert answer.json()["sent"] is True
        (message,) = sink.wait(1)
        assert message["Subject"] == "imapscope test notification (ops mail)"
        # Nothing listens on port 1: a 502 that says the channel could not deliver, and why.
        dead = api.post("/api/v1/channels", json={
            "name": "dead", "url": "mailto://127.0.0.1:1?from=alerts@example.com&to=ops@example.com",
        }).json()  # fmt: skip
        answer = api.post(f"/api/v1/channels/{dead['id']}/test")
        assert answer.status_code == 502
        assert "error while submitting email" in answer.json()["error"]
        assert "check the channel's URL" in answer.json()["error"]
        logged = api.get(f"/api/v1/channels/{dead['id']}/notifications").json()
        assert [(n["kind"], n["status"]) for n in logged] == [("test", "failed")]
        assert api.get(f"/api/v1/channels/{dead['id']}").json()["failed_notifications"] == 1


def test_channel_urls_are_sealed_and_shown_masked(served: Serving) -> None:
    token = "xoxb-SECRET-TOKEN-123456"
    with served.client() as api:
        added = api.post("/api/v1/channels", json={
            "name": "chat", "url": f"json://bob:{PASSWORD}@127.0.0.1:9/hook?token={token}",
        }).json()  # fmt: skip
        listed = api.get("/api/v1/channels").text
    assert added["shown"].startswith("json://bob:****@127.0.0.1:9/hook")
    for text in (json.dumps(added), listed):
        assert PASSWORD not in text
        assert token not in text
    assert PASSWORD.encode() not in served.call(_dump_channels)


async def _dump_channels(store: Any) -> bytes:
    from sqlalchemy import select  # noqa: PLC0415

    from imapscope.store._models import Channel  # noqa: PLC0415

    async with store._session() as s:
        return b"".join(bytes(u) for u in await s.scalars(select(Channel.url)))


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [("/api/v1/monitors", {"name": "x", "host": "localhost", "interval": 2},
      "interval 2s is out of range: use 5 seconds"),
     ("/api/v1/monitors", {"name": "x", "host": "localhost", "rules": {"fail_after": 0}},
      "fail_after = 0: use a whole number 1-100"),
     ("/api/v1/monitors", {"name": "x", "host": "localhost", "channels": [99]},
      "no channel with id 99"),
     ("/api/v1/monitors", {"name": "x"}, "give either account_id"),
     ("/api/v1/channels", {"name": "x", "url": "nosuch://example.com/abc"},
      "is not one Apprise knows"),
     ("/api/v1/channels", {"name": "x", "kind": "webhook", "url": "ftp://example.com/"},
      "a webhook URL is http:// or https://"),
     ("/api/v1/maintenance", {"starts": "2026-12-02T10:00:00Z", "ends": "2026-12-02T09:00:00Z"},
      "before it starts"),
     ("/api/v1/maintenance", {"starts": "2026-12-02T10:00:00", "ends": "2026-12-02T11:00:00"},
      "with a time zone")],
)  # fmt: skip
def test_bad_input_says_what_to_fix(
    served: Serving, path: str, body: dict[str, Any], said: str
) -> None:
    with served.client() as api:
        answer = api.post(path, json=body)
        assert 400 <= answer.status_code < 500, answer.text
        assert said in answer.json()["error"]
        assert api.get("/api/v1/monitors").json() == []
        assert api.get("/api/v1/channels").json() == []


def test_an_account_s_sync_health_feeds_the_same_alerting(
    served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        hook = api.post("/api/v1/channels", json=hook_channel(receiver)).json()
        bad = api.post("/api/v1/accounts?verify=false",
                       json=account(sandbox, secret=WRONG)).json()  # fmt: skip
        path = f"/api/v1/accounts/{bad['id']}"
        wait_for(api, path, lambda a: a["state"] == "auth_error")
        monitor = add_monitor(api, name="alice's sync", kind="sync", account_id=bad["id"],
                              channels=[hook["id"]],
                              rules={"fail_after": 1, "recover_after": 1})  # fmt: skip
        shown = api.get(f"/api/v1/monitors/{monitor['id']}").json()
        assert (shown["state"], shown["code"]) == ("down", "AUTH_FAILED")
        receiver.wait(1)
        assert api.patch(path, json={"secret": PASSWORD}).status_code == 200
        wait_for(api, path, lambda a: a["state"] == "idle")
        # Syncing again, with errors in the last hour: degraded, a warning, which is up.
        assert run_now(api, monitor["id"])["status"] == "warning"
        receiver.wait(2)
    payloads = [json.loads(d.body) for d in receiver.deliveries]
    assert [p["type"] for p in payloads] == ["incident.opened", "incident.resolved"]
    assert payloads[0]["data"]["code"] == "AUTH_FAILED"  # as the account's error log names it
    assert payloads[0]["data"]["fix"]
    no_secret(*(d.body.decode() for d in receiver.deliveries))


def test_using_a_channel_leaves_the_process_e_mail_alone() -> None:
    """Apprise's e-mail plugin re-registers the utf-8 charset for the whole process when it
    loads; imapscope puts it back, so the mail it makes (demo mail, round-trip probes) keeps its
    bytes (a fresh process: this one may have loaded Apprise already)."""
    script = (
        "from imapscope.sandbox import demo\n"
        "from imapscope.monitor import prepare\n"
        "before = [m.raw for m in demo.generate(5)]\n"
        "prepare('apprise', 'mailto://127.0.0.1:2525?from=a@example.com&to=d@example.com')\n"
        "assert [m.raw for m in demo.generate(5)] == before, 'the e-mail charsets changed'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
