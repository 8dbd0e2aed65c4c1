"""Round-trip monitors: a tagged message submitted over SMTP (the sandbox's, STARTTLS and AUTH
as Postfix does them) and watched arriving through the account's sync. The legs are timed, the
probe is deleted afterwards, and a failure names the leg that broke: a dropped message is lost
on the receive leg, a refused login breaks the send leg; every SMTP_* and DELIVERY_* code is
produced here against a real server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from imapscope.monitor._roundtrip import LegFailure, probe_message, submit
from imapscope.net import client_context
from imapscope.sandbox import FaultRule
from tests.conftest import PASSWORD, Sandbox
from tests.serving import Serving
from tests.test_api import account, no_secret, wait_for


def smtp_settings(sandbox: Sandbox, **change: Any) -> dict[str, Any]:
    return {"host": "localhost", "port": sandbox.server.smtp_port, "security": "starttls",
            "user": "alice", "from": "probe@example.test", "deadline": 10} | change  # fmt: skip


def add_roundtrip(api: httpx.Client, sandbox: Sandbox, account_id: int, **smtp: Any) -> int:
    answer = api.post("/api/v1/monitors", json={
        "name": "delivery to alice", "kind": "roundtrip", "account_id": account_id,
        "interval": 60, "password": PASSWORD, "smtp": smtp_settings(sandbox, **smtp),
    })  # fmt: skip
    assert answer.status_code == 201, answer.text
    monitor_id: int = answer.json()["id"]  # its first run starts at once
    return monitor_id


def first_run(api: httpx.Client, monitor_id: int) -> dict[str, Any]:
    runs = wait_for(api, f"/api/v1/monitors/{monitor_id}/runs", lambda r: len(r) >= 1,
                    timeout=45)  # fmt: skip
    run: dict[str, Any] = runs[0]
    return run


def steps(run: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in run["steps"]}


def probes(sandbox: Sandbox, mailbox: str = "INBOX") -> list[bytes]:
    box = sandbox.server.store.users["alice"].get(mailbox)
    return [m.raw for m in box.messages if b"imapscope round trip" in m.raw]


@pytest.mark.usefixtures("database")
def test_a_round_trip_times_both_legs_and_deletes_its_probe(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()
        wait_for(api, f"/api/v1/accounts/{alice['id']}", lambda a: a["state"] == "idle")
        monitor_id = add_roundtrip(api, sandbox, alice["id"])
        run = first_run(api, monitor_id)
        shown = api.get(f"/api/v1/monitors/{monitor_id}").json()
    assert run["status"] == "ok", run
    assert steps(run) == {"submit": "pass", "deliver": "pass", "cleanup": "pass"}
    legs = {s["name"]: s["ms"] for s in run["steps"]}
    assert 0 < legs["submit"] < 5000
    assert 0 < legs["deliver"] < 5000  # pushed through IDLE, not found by polling
    assert run["total_ms"] >= legs["submit"] + legs["deliver"]
    assert probes(sandbox) == []  # deleted (UID EXPUNGE)
    assert shown["smtp"]["port"] == sandbox.server.smtp_port
    assert shown["has_password"] is True
    no_secret(str(run), str(shown))


# On SQLite only: each case waits out a deadline or a poll (10 s); the round trip's store
# path runs on both databases in the test above.
@pytest.mark.parametrize(
    "case",
    [(FaultRule("drop", "SMTP-DATA"), "DELIVERY_LOST", "deliver", 10),
     (FaultRule("no", "SMTP-AUTH", text=f"no, not with {PASSWORD}"), "SMTP_AUTH_FAILED",
      "submit", 10),
     # Junk is seen when the account's sync polls it (every 10 s here), not through IDLE.
     (FaultRule("junk", "SMTP-DATA"), "DELIVERY_JUNK", "deliver", 25)],
)  # fmt: skip
def test_a_broken_leg_is_named(
    served: Serving, sandbox: Sandbox, case: tuple[FaultRule, str, str, int]
) -> None:
    fault, code, leg, deadline = case
    sandbox.server.faults.add(fault)
    with served.client() as api:
        alice = api.post("/api/v1/accounts",
                         json=account(sandbox, poll_interval=10)).json()  # fmt: skip
        wait_for(api, f"/api/v1/accounts/{alice['id']}", lambda a: a["state"] == "idle")
        monitor_id = add_roundtrip(api, sandbox, alice["id"], deadline=deadline)
        run = first_run(api, monitor_id)
    assert run["code"] == code, run
    assert steps(run)[leg] == ("warn" if code == "DELIVERY_JUNK" else "fail")
    if leg == "deliver" and code == "DELIVERY_LOST":
        assert run["status"] == "fail"
        assert f"not seen within {deadline} s" in run["evidence"][0]
    if code == "DELIVERY_JUNK":
        assert run["status"] == "warning"  # it arrived: up, with the reason to look
        assert probes(sandbox, "Junk") == []  # deleted from Junk
    if leg == "submit":
        assert "deliver" not in steps(run)
        assert "535 5.7.8 no, not with ***" in run["evidence"][0]  # the echo is masked
    no_secret(str(run))


@pytest.mark.usefixtures("database")
def test_a_paused_account_cannot_be_watched(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()
        api.post(f"/api/v1/accounts/{alice['id']}/pause")
        run = first_run(api, add_roundtrip(api, sandbox, alice["id"]))
    assert run["code"] == "DELIVERY_UNWATCHED"
    assert probes(sandbox) == []  # nothing was sent


# -- the send leg against real servers, without serve -----------------------------------------


def send(sandbox: Sandbox, **change: Any) -> None:
    smtp = smtp_settings(sandbox, **change)
    message = probe_message(smtp["from"], "alice@example.test", "rt-test")
    submit(smtp, PASSWORD, message, "alice@example.test", timeout=2,
           context=client_context(str(sandbox.ca_file)))  # fmt: skip


def failed(sandbox: Sandbox, **change: Any) -> LegFailure:
    with pytest.raises(LegFailure) as caught:
        send(sandbox, **change)
    return caught.value


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def plain_smtp() -> Iterator[int]:
    """An SMTP server with neither STARTTLS nor AUTH (aiosmtpd's defaults)."""

    class Sink:
        async def handle_DATA(self, *_args: Any) -> str:  # noqa: N802
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def test_every_send_leg_failure_has_its_code(
    sandbox: Sandbox, silent_port: int, plain_smtp: int
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    send(sandbox)  # the working case, so the failures below are the changes' doing
    cases: list[tuple[dict[str, Any], str]] = [
        ({"port": closed_port}, "SMTP_CONNECT_FAILED"),
        ({"port": silent_port}, "SMTP_TIMEOUT"),
        ({"security": "tls"}, "SMTP_TLS_FAILED"),  # implicit TLS to a plaintext port
        ({"port": plain_smtp}, "SMTP_STARTTLS_UNSUPPORTED"),
        ({"security": "none"}, "SMTP_AUTH_UNSUPPORTED"),  # no AUTH before TLS
    ]
    for change, code in cases:
        assert failed(sandbox, **change).finding.code == code, change
    refusals = [("SMTP-MAIL", "SMTP_SENDER_REFUSED"), ("SMTP-DATA", "SMTP_MESSAGE_REFUSED")]
    for command, code in refusals:
        rule = sandbox.server.faults.add(FaultRule("no", command, text="Policy says no"))
        found = failed(sandbox).finding
        sandbox.server.faults.clear(rule.id)
        assert found.code == code
        assert "Policy says no" in found.evidence[0]
    untrusted = probe_message("probe@example.test", "alice@example.test", "rt-y")
    with pytest.raises(LegFailure) as caught:  # the sandbox's CA is not trusted here
        submit(smtp_settings(sandbox), PASSWORD, untrusted, "alice@example.test", timeout=2,
               context=client_context())  # fmt: skip
    assert caught.value.finding.code == "SMTP_TLS_FAILED"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.finding.evidence[0]
    nobody = probe_message("probe@example.test", "nobody@example.test", "rt-x")
    with pytest.raises(LegFailure) as caught:
        submit(smtp_settings(sandbox), PASSWORD, nobody, "nobody@example.test", timeout=2,
               context=client_context(str(sandbox.ca_file)))  # fmt: skip
    assert caught.value.finding.code == "SMTP_RECIPIENT_REFUSED"
    assert "no such user in this sandbox" in caught.value.finding.evidence[0]
