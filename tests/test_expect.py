"""The receive API against a real server (the sandbox, mail delivered over its SMTP): an
expectation matches only what the server files after it was registered (its own UIDs, not
clocks), exclusive ones share nothing, near misses say which criterion failed, the matched
message comes with its links, codes and attachments, and bad input is a 4xx that says what to
fix."""

from __future__ import annotations

import concurrent.futures
import hashlib
import smtplib
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from imapscope.sandbox import FaultRule
from imapscope.store._db import DATABASE_ENV
from imapscope.sync import Backoff, SyncOptions
from tests.conftest import Sandbox
from tests.servers.postgres import Postgres
from tests.serving import Serving, serving
from tests.test_api import account, no_secret, wait_for


def send(sandbox: Sandbox, subject: str, *, to: str = "alice@example.test",
         body: str = "hello", attach: bytes | None = None) -> None:  # fmt: skip
    """Deliver a message to alice over the sandbox's SMTP (returns once it is filed)."""
    message = EmailMessage()
    message["From"] = "Acme <noreply@acme.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    if attach is not None:
        message.add_attachment(attach, maintype="application", subtype="pdf",
                               filename="invoice.pdf")  # fmt: skip
    with smtplib.SMTP("127.0.0.1", sandbox.server.smtp_port, timeout=10) as smtp:
        smtp.send_message(message, to_addrs=["alice@example.test"])


def registered(api: httpx.Client, sandbox: Sandbox, **change: Any) -> int:
    alice = api.post("/api/v1/accounts", json=account(sandbox, **change)).json()
    wait_for(api, f"/api/v1/accounts/{alice['id']}", lambda a: a["state"] == "idle", timeout=20)
    account_id: int = alice["id"]
    return account_id


def expect(api: httpx.Client, account_id: int, **criteria: Any) -> dict[str, Any]:
    answer = api.post(f"/api/v1/accounts/{account_id}/expectations", json=criteria)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    assert found["state"] == "waiting"
    return found


def wait(api: httpx.Client, expectation_id: int, seconds: float = 15) -> dict[str, Any]:
    answer = api.get(f"/api/v1/expectations/{expectation_id}", params={"wait": seconds})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def uid_of(sandbox: Sandbox, subject: str) -> int:
    box = sandbox.server.store.users["alice"].get("INBOX")
    found = [m.uid for m in box.messages if f"Subject: {subject}\n".encode() in
             m.raw.replace(b"\r\n", b"\n")]  # fmt: skip
    assert len(found) == 1, (subject, found)
    return found[0]


@pytest.mark.usefixtures("database")
def test_only_mail_filed_after_registration_matches(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = registered(api, sandbox)
        send(sandbox, "Welcome to Acme (before)", body="Your code is 111111")
        e = expect(api, alice, subject="welcome to acme")  # any case
        send(
            sandbox,
            "Welcome to Acme (after)",
            body="Your verification code is 482 913.\nhttps://acme.test/verify?t=abc",
        )
        found = wait(api, e["id"])
    assert found["state"] == "matched", found
    message = found["message"]
    assert message["envelope"]["subject"] == "Welcome to Acme (after)"
    assert message["uid"] == uid_of(sandbox, "Welcome to Acme (after)")
    before = uid_of(sandbox, "Welcome to Acme (before)")
    assert message["uid"] >= found["baseline"]["INBOX"] > before
    assert message["codes"] == ["482913"]
    assert message["links"] == ["https://acme.test/verify?t=abc"]
    assert "Your verification code" in message["text"]
    assert found["criteria"] == {"subject": "welcome to acme"}
    no_secret(str(found))


def test_registration_races_are_judged_by_the_servers_order(
    served: Serving, sandbox: Sandbox
) -> None:
    """100 times: a message delivered just before registering never matches; one delivered
    at the same moment matches exactly when the server filed it after the registration's
    STATUS (its UID is at or above the baseline); the one after always can. Four lanes of 25
    run side by side (each its own subjects: they cannot match each other's mail)."""
    with served.client() as api:
        alice = registered(api, sandbox)

    def lane(lane_id: int) -> list[str]:
        got_each = []
        with served.client() as api, concurrent.futures.ThreadPoolExecutor(1) as pool:
            for i in range(lane_id * 25, lane_id * 25 + 25):
                send(sandbox, f"race {i} before")
                racing = pool.submit(send, sandbox, f"race {i} same")
                e = expect(api, alice, subject=f"/^race {i} /")
                racing.result()
                send(sandbox, f"race {i} after")
                found = wait(api, e["id"])
                assert found["state"] == "matched", (i, found)
                got = found["message"]["envelope"]["subject"]
                baseline = found["baseline"]["INBOX"]
                assert uid_of(sandbox, f"race {i} before") < baseline
                same = uid_of(sandbox, f"race {i} same")
                # The first message at or above the baseline is the one matched.
                assert got == (f"race {i} same" if same >= baseline else f"race {i} after"), (
                    i, found,
                )  # fmt: skip
                got_each.append(got.rsplit(" ", 1)[1])
        return got_each

    with concurrent.futures.ThreadPoolExecutor(4) as lanes:
        outcomes = Counter(o for each in lanes.map(lane, range(4)) for o in each)
    assert sum(outcomes.values()) == 100
    assert set(outcomes) <= {"same", "after"}


def test_parallel_exclusive_expectations_each_get_their_own_message(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api, concurrent.futures.ThreadPoolExecutor(20) as pool:
        alice = registered(api, sandbox)
        ids = [expect(api, alice, subject="Reset your password", exclusive=True)["id"]
               for _ in range(20)]  # fmt: skip
        for i in range(20):
            send(sandbox, f"Reset your password ({i})")
        found = list(pool.map(lambda e: wait(api, e), ids))
    assert all(f["state"] == "matched" for f in found), found
    uids = [f["message"]["uid"] for f in found]
    assert len(set(uids)) == 20  # each a different message
    assert {f["message"]["envelope"]["subject"] for f in found} == {
        f"Reset your password ({i})" for i in range(20)
    }


def test_near_misses_name_the_criterion_that_failed(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = registered(api, sandbox)
        e = expect(api, alice, subject="Verify your account", to="signup@example.test")
        send(sandbox, "Verify your acct", to="signup@example.test")
        send(sandbox, "Verify your account", to="bob@example.test")
        sandbox.server.faults.add(FaultRule("junk", "SMTP-DATA", count=1))
        send(sandbox, "Verify your account", to="signup@example.test")
        found = wait_for(api, f"/api/v1/expectations/{e['id']}",
                         lambda f: len(f["near_misses"]) == 3, timeout=15)  # fmt: skip
    assert found["state"] == "waiting"
    by_folder = {(m["folder"], m["subject"], tuple(m["to"])): m["failed"]
                 for m in found["near_misses"]}  # fmt: skip
    subject = by_folder[("INBOX", "Verify your acct", ("signup@example.test",))]
    assert [f["criterion"] for f in subject] == ["subject"]
    assert subject[0]["got"] == "Verify your acct"
    assert "'Verify your acct', not containing 'Verify your account'" in subject[0]["said"]
    recipient = by_folder[("INBOX", "Verify your account", ("bob@example.test",))]
    assert [f["criterion"] for f in recipient] == ["to"]
    assert recipient[0]["got"] == "bob@example.test"
    junk = by_folder[("Junk", "Verify your account", ("signup@example.test",))]
    assert [f["criterion"] for f in junk] == ["folder"]
    assert junk[0]["said"] == "landed in Junk; the expectation watches INBOX"


def test_other_folders_are_watched_while_an_expectation_names_them(
    served: Serving, sandbox: Sandbox
) -> None:
    """Junk has no IDLE here (INBOX has): while an expectation names it, it is polled every
    second, not at the account's poll interval (an hour here)."""
    with served.client() as api:
        alice = registered(api, sandbox, poll_interval=3600)
        e = expect(api, alice, subject="Newsletter", folders=["Junk"])
        sandbox.server.faults.add(FaultRule("junk", "SMTP-DATA", count=1))
        send(sandbox, "Newsletter #1")
        found = wait(api, e["id"], 30)
    assert found["state"] == "matched", found
    assert found["message"]["folder"] == "Junk"


def test_attachments_are_listed_and_downloadable(served: Serving, sandbox: Sandbox) -> None:
    pdf = b"%PDF-1.4 not really a pdf \x00\x01\x02" * 100
    with served.client() as api:
        alice = registered(api, sandbox)
        e = expect(api, alice, subject="Invoice", body="/total: [0-9]+ EUR/")
        send(sandbox, "Invoice 2026-12", body="Your total: 42 EUR", attach=pdf)
        found = wait(api, e["id"])
        listed = found["message"]["attachments"]
        assert listed == [{"index": 0, "name": "invoice.pdf", "type": "application/pdf",
                           "size": len(pdf), "sha256": hashlib.sha256(pdf).hexdigest(),
                           "url": f"/api/v1/expectations/{e['id']}/attachments/0"}]  # fmt: skip
        got = api.get(listed[0]["url"])
        missing = api.get(f"/api/v1/expectations/{e['id']}/attachments/1")
    assert got.status_code == 200
    assert got.content == pdf
    assert got.headers["content-type"] == "application/pdf"
    assert "invoice.pdf" in got.headers["content-disposition"]
    assert missing.status_code == 404
    assert "has 1 attachments; there is no attachment 1" in missing.json()["error"]


def test_cancel_and_expiry(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = registered(api, sandbox)
        cancelled = expect(api, alice, subject="never")
        assert api.delete(f"/api/v1/expectations/{cancelled['id']}").status_code == 204
        expiring = expect(api, alice, subject="never", expires_in=1)
        expired = wait(api, expiring["id"], 10)  # answers when it expires, not after 10 s
        send(sandbox, "never ever")
        shown = api.get(f"/api/v1/expectations/{cancelled['id']}").json()
        missing = api.get("/api/v1/expectations/99999")
    assert shown["state"] == "cancelled"
    assert expired["state"] == "expired"
    assert expired["message"] is None
    assert missing.status_code == 404
    assert "no expectation with id 99999" in missing.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [({"subject": "/(unclosed/"}, 422, "subject: the pattern '(unclosed' does not compile"),
     ({"subject": "/(a)\\1/"}, 422, "no backreferences or lookaround"),
     ({"body": "/(?=x)y/"}, 422, "body: the pattern"),
     ({"code_pattern": "[z-a]"}, 422, "does not compile"),
     ({"folders": ["Nowhere"]}, 422, "there is no folder 'Nowhere' on the server"),
     ({"folders": []}, 422, "folders"),
     ({"expires_in": 0}, 422, "expires_in"),
     ({"subject": "x" * 1001}, 422, "subject"),
     ({"colour": "red"}, 422, "colour"),
     ({"header": {"X-Ok": "/(b)\\1/"}}, 422, "header X-Ok")],
)  # fmt: skip
def test_bad_input_says_what_to_fix(
    served: Serving, sandbox: Sandbox, body: dict[str, Any], status: int, said: str
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        answer = api.post(f"/api/v1/accounts/{alice}/expectations", json=body)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]
    if "Nowhere" in said:
        assert "INBOX" in answer.json()["error"]  # the folders there are


def test_waits_are_bounded_and_patterns_run_in_linear_time(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api:
        alice = registered(api, sandbox)
        too_long = api.get("/api/v1/expectations/1", params={"wait": 121})
        # A pattern that backtracks catastrophically in a backtracking engine: RE2 runs it in
        # linear time, so judging a hostile subject takes no longer than any other.
        e = expect(api, alice, subject="/^(a+)+$/")
        send(sandbox, "a" * 900 + "!")
        send(sandbox, "a" * 900)
        found = wait(api, e["id"])
        unknown_account = api.post("/api/v1/accounts/999/expectations", json={})
    assert too_long.status_code == 422
    assert "wait" in too_long.json()["error"]
    assert found["state"] == "matched"
    assert found["message"]["envelope"]["subject"] == "a" * 900
    # The miss before it is listed, whether it was judged in the same round or before.
    assert [(m["subject"][-1], m["failed"][0]["criterion"]) for m in found["near_misses"]] == [
        ("!", "subject")
    ]
    assert unknown_account.status_code == 404


def test_a_paused_account_cannot_be_expected_on(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        api.post(f"/api/v1/accounts/{alice}/pause")
        answer = api.post(f"/api/v1/accounts/{alice}/expectations", json={})
    assert answer.status_code == 409
    assert "is paused: nothing watches its mail; resume it" in answer.json()["error"]


def test_an_unreachable_server_is_named(served: Serving, sandbox: Sandbox) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        refusal = FaultRule("no", "AUTHENTICATE", code="AUTHENTICATIONFAILED", text="go away")
        sandbox.server.faults.add(refusal)
        answer = api.post(f"/api/v1/accounts/{alice}/expectations", json={})
    assert answer.status_code == 502, answer.text
    assert answer.json()["code"] == "AUTH_FAILED"
    assert "could not be asked where its mail stands" in answer.json()["error"]


def test_two_workers_one_registers_the_other_judges(
    sandbox: Sandbox, tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two serve workers on one PostgreSQL database: expectations registered and waited on
    through the worker that does not sync the account are judged by the one that does (it
    learns of watched folders at its next reconcile); exclusive claims hold across both."""
    monkeypatch.setenv(DATABASE_ENV, postgres.create_database())
    options = SyncOptions(ca_file=str(sandbox.ca_file), timeout=5,
                          backoff=Backoff(first=0.05, cap=0.2))  # fmt: skip
    with serving(tmp_path / "data", options) as one, serving(tmp_path / "data", options) as two:
        with one.client() as api:
            alice = registered(api, sandbox, poll_interval=3600)
        owner, other = (one, two) if one.service.owned else (two, one)
        assert alice in owner.service.owned
        assert alice not in other.service.owned
        with other.client() as api, owner.client() as api_owner, \
                concurrent.futures.ThreadPoolExecutor(20) as pool:  # fmt: skip
            junk = expect(api, alice, subject="Newsletter", folders=["Junk"])
            sandbox.server.faults.add(FaultRule("junk", "SMTP-DATA", count=1))
            send(sandbox, "Newsletter #2")
            in_junk = wait(api, junk["id"], 30)
            ids = [expect(client, alice, subject="Your receipt", exclusive=True)["id"]
                   for client in (api, api_owner) for _ in range(10)]  # fmt: skip
            for i in range(20):
                send(sandbox, f"Your receipt {i}")
            found = list(pool.map(lambda e: wait(api, e, 30), ids))
    assert in_junk["state"] == "matched", in_junk
    assert in_junk["message"]["folder"] == "Junk"
    assert all(f["state"] == "matched" for f in found), found
    assert len({f["message"]["uid"] for f in found}) == 20


def test_a_message_with_a_broken_structure_is_judged_and_later_mail_still_matches(
    served: Serving, sandbox: Sandbox
) -> None:
    """A message whose multipart never reaches its boundary (spam, a cut message) is read and
    judged like any other (a near miss here), and the mail after it matches. Reading it raised
    inside the standard library: the judging of its folder stopped at it at every round, so no
    waiting expectation saw the mail that came after."""
    broken = (
        b"From: Acme <noreply@acme.test>\r\nTo: alice@example.test\r\n"
        b"Subject: Welcome to Acme (broken)\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
        b'--o\r\nContent-Type: multipart/related; boundary="never"\r\n\r\nlost\r\n--o--\r\n'
    )
    with served.client() as api:
        alice = registered(api, sandbox)
        e = expect(api, alice, subject="welcome to acme", body="code 424242")
        with smtplib.SMTP("127.0.0.1", sandbox.server.smtp_port, timeout=10) as smtp:
            smtp.sendmail("noreply@acme.test", ["alice@example.test"], broken)
        send(sandbox, "Welcome to Acme (good)", body="Your code 424242 is here.")
        found = wait(api, e["id"])
    assert found["state"] == "matched", found
    assert found["message"]["envelope"]["subject"] == "Welcome to Acme (good)"
    [near] = found["near_misses"]
    assert near["subject"] == "Welcome to Acme (broken)"
    assert [f["criterion"] for f in near["failed"]] == ["body"]


def test_a_message_the_parser_chokes_on_is_a_near_miss_that_says_so(
    served: Serving, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Whatever else the MIME parser may raise on is a near miss ("could not be read"), logged
    with its traceback, and the judging goes on to the mail after it."""
    from imapscope.expect import _service  # noqa: PLC0415

    parse = _service.readable

    def choking(raw: bytes) -> Any:
        if b"(choking)" in raw:
            raise RuntimeError("a parser bug")
        return parse(raw)

    monkeypatch.setattr(_service, "readable", choking)
    with served.client() as api:
        alice = registered(api, sandbox)
        e = expect(api, alice, subject="welcome to acme")
        send(sandbox, "Welcome to Acme (choking)")
        send(sandbox, "Welcome to Acme (good)")
        found = wait(api, e["id"])
    assert found["state"] == "matched", found
    assert found["message"]["envelope"]["subject"] == "Welcome to Acme (good)"
    [near] = found["near_misses"]
    assert near["subject"] == "Welcome to Acme (choking)"
    assert [(f["criterion"], f["said"]) for f in near["failed"]] == [
        ("read", "the message could not be read (RuntimeError)")
    ]
    assert "could not be read" in caplog.text


def test_a_message_nested_too_deep_to_read_matches_with_its_problem_and_no_attachments(
    served: Serving, sandbox: Sandbox
) -> None:
    """Multiparts nested 3,000 deep: the parser recurses past Python's limit. The message still
    matches on its envelope, with the problem said, no body and no attachments (asking for one
    is a 404 that says how many there are, not a server error)."""
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(3000)
    )
    raw = (
        b"From: Acme <noreply@acme.test>\r\nTo: alice@example.test\r\n"
        b"Subject: Welcome to Acme (deep)\r\nMIME-Version: 1.0\r\n" + deep
    )
    with served.client() as api:
        alice = registered(api, sandbox)
        e = expect(api, alice, subject="welcome to acme")
        with smtplib.SMTP("127.0.0.1", sandbox.server.smtp_port, timeout=10) as smtp:
            smtp.sendmail("noreply@acme.test", ["alice@example.test"], raw)
        found = wait(api, e["id"])
        attachment = api.get(f"/api/v1/expectations/{e['id']}/attachments/0")
    assert found["state"] == "matched", found
    assert found["message"]["problems"] == [
        "the message is nested too deeply to read (its parts, or a header's comments)"
    ]
    assert found["message"]["attachments"] == []
    assert attachment.status_code == 404
    assert "has 0 attachments" in attachment.json()["error"]
