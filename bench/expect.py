"""The receive API's latency: a message delivered over SMTP, to the matched expectation's
answer reaching the test that waits for it.

    .venv/bin/python -m bench.expect [--rounds 200] [--security tls]

`imapscope sandbox` (its own process, open mode) and `imapscope serve` (its own process, on
SQLite) with one registered account idling on INBOX. Each round registers an expectation, holds
``GET /api/v1/expectations/{id}?wait=30`` in a thread, delivers the message over the sandbox's
SMTP and times from the end of the SMTP transaction (the server has filed the message) to the
held answer. Printed side by side with the same delivery seen through ``GET /api/v1/events?wait``
(the sync's ``message.new`` event, no expectation), the floor the receive API adds its judging
to. Target (issue 15): p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from bench._sandbox import ready, sandbox, wait_idle
from bench.accounts_idle import serve, stop


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def deliver(port: int, subject: str) -> float:
    """Send one message; the moment the server accepted it (perf_counter)."""
    message = EmailMessage()
    message["From"] = "bench@example.test"
    message["To"] = "alice@example.test"
    message["Subject"] = subject
    message.set_content("Your verification code is 123456.\nhttps://example.test/verify?t=x\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)
        return time.perf_counter()


def held(api: httpx.Client, path: str, params: dict[str, Any], out: dict[str, Any]) -> None:
    out["answer"] = api.get(path, params=params, timeout=60).json()
    out["at"] = time.perf_counter()


def rounds(api: httpx.Client, account_id: int, smtp_port: int, n: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"expect": [], "event": []}
    for i in range(n):
        # The receive API: register, hold the wait, deliver.
        e = api.post(f"/api/v1/accounts/{account_id}/expectations",
                     json={"subject": f"bench {i} "}).json()  # fmt: skip
        out: dict[str, Any] = {}
        waiter = threading.Thread(target=held, args=(
            api, f"/api/v1/expectations/{e['id']}", {"wait": 30}, out))  # fmt: skip
        waiter.start()
        time.sleep(0.005)  # the GET is held before the mail goes
        sent = deliver(smtp_port, f"bench {i} expect")
        waiter.join()
        assert out["answer"]["state"] == "matched", out
        assert out["answer"]["message"]["codes"] == ["123456"], out
        found["expect"].append(out["at"] - sent)
        # The floor: the same delivery seen as a sync event.
        cursor = api.get("/api/v1/events", params={"after": 0, "limit": 1}).json()
        last = api.get("/api/v1/events", params={"after": cursor["next"], "limit": 1000}).json()
        after = last["next"]
        out = {}
        waiter = threading.Thread(target=held, args=(api, "/api/v1/events", {
            "after": after, "wait": 30, "kind": "message.new"}, out))  # fmt: skip
        waiter.start()
        time.sleep(0.005)
        sent = deliver(smtp_port, f"bench {i} event")
        waiter.join()
        assert out["answer"]["events"], out
        found["event"].append(out["at"] - sent)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--security", choices=["tls", "none"], default="tls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox(Path(tmp) / "sandbox") as box:
        served = serve(Path(tmp) / "serve", box.ca_file)
        try:
            headers = {"Authorization": f"Bearer {served.token}"}
            with httpx.Client(base_url=served.url, headers=headers, timeout=30) as api:
                ready(api)
                tls = args.security == "tls"
                alice = api.post("/api/v1/accounts", json={
                    "email": "alice@example.test", "host": "localhost",
                    "port": box.tls_port if tls else box.plain_port, "security": args.security,
                    "username": "alice", "secret": "pw",
                } | ({} if tls else {"allow_plaintext": True})).json()  # fmt: skip
                wait_idle(api, alice["id"])
                found = rounds(api, alice["id"], box.smtp_port, args.rounds)
        finally:
            stop(served.proc)
    print(f"{args.rounds} rounds, sandbox over {args.security}, serve on SQLite (ms, from the "
          "end of the SMTP transaction):")  # fmt: skip
    print(f"{'':34} {'p50':>7} {'p99':>7} {'max':>7} {'mean':>7}")
    for name, label in [("expect", "matched expectation (receive API)"),
                        ("event", "message.new event (GET /events)")]:  # fmt: skip
        ms = [v * 1000 for v in found[name]]
        print(
            f"{label:34} {pct(ms, 50):7.1f} {pct(ms, 99):7.1f} {max(ms):7.1f} "
            f"{statistics.mean(ms):7.1f}"
        )
    ratio = pct(found["expect"], 50) / pct(found["event"], 50)
    print(f"receive API / event p50 ratio: {ratio:.2f}x   target: p99 <= 100 ms")


if __name__ == "__main__":
    main()
