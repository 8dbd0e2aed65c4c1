"""The sandbox behaves like a real server for real clients: imaplib, imapclient, our own codec
client, and imapscope check."""

from __future__ import annotations

import asyncio
import imaplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imapclient
import pytest

from imapscope.imap import Append, Exists, ExpungeResponse, FetchResponse, Idle, Login, Select
from imapscope.probe import CheckOptions, run_check
from imapscope.sandbox import SandboxServer, build_store, ensure_certificates
from tests.imap_driver import Driver
from tests.scripted import running, sandbox_process

PASSWORD = "alice-sandbox-pw"


@dataclass
class Running:
    server: SandboxServer
    ca_file: Path

    def client(self, mode: str = "plain") -> imaplib.IMAP4:
        if mode == "tls":
            context = ssl.create_default_context(cafile=str(self.ca_file))
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                "localhost", self.server.tls_port or 0, ssl_context=context
            )
        else:
            client = imaplib.IMAP4("127.0.0.1", self.server.port)
            if mode == "starttls":
                client.starttls(ssl.create_default_context(cafile=str(self.ca_file)))
        client.login("alice", PASSWORD)
        return client


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Running]:
    certificates = ensure_certificates(tmp_path / "certs")
    store = build_store([("alice", PASSWORD), ("bob", "bob-pw")], demo_messages=12)
    server = SandboxServer(
        store, port=0, tls_port=0, smtp_port=0, tls_context=certificates.server_context()
    )
    with running(server):
        yield Running(server, certificates.ca_file)


@pytest.mark.parametrize("mode", ["plain", "starttls", "tls"])
def test_login_in_every_mode_and_wrong_password(sandbox: Running, mode: str) -> None:
    client = sandbox.client(mode)
    status, count = client.select("INBOX", readonly=True)
    assert (status, count) == ("OK", [b"12"])
    client.logout()
    refused = imaplib.IMAP4("127.0.0.1", sandbox.server.port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        refused.login("alice", "wrong")
    refused.shutdown()


def test_special_use_folders_and_status(sandbox: Running) -> None:
    client = sandbox.client()
    _, folders = client.list()
    listed = b" ".join(f for f in folders if isinstance(f, bytes))
    for role in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert role in listed
    _, status = client.status("Sent", "(MESSAGES UIDNEXT)")
    assert status == [b"Sent (MESSAGES 5 UIDNEXT 6)"]
    client.logout()


def test_fetch_items_and_seen_semantics(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX")
    _, unseen = client.search(None, "UNSEEN")
    first = (unseen[0] or b"").split()[0]
    _, data = client.fetch(first, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] FLAGS)")
    assert b"\\Seen" not in data[-1]  # PEEK leaves \Seen alone
    _, data = client.fetch(first, "(BODY[TEXT]<0.10> FLAGS)")
    flat = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in data)
    # Ten bytes of text come as a quoted string or a literal, as the server likes.
    partial = re.search(rb'BODY\[TEXT\]<0> (?:"([^"]*)"|\{10\}\r?\n?(.{10}))', flat, re.S)
    assert partial is not None
    assert len(partial.group(1) or partial.group(2)) == 10
    assert b"\\Seen" in flat  # a non-PEEK body fetch sets \Seen
    _, data = client.fetch("1:3", "(UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert len([d for d in data if isinstance(d, bytes)]) == 3
    client.logout()


def test_search_keys(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX", readonly=True)
    everything = client.search(None, "ALL")[1][0].split()  # type: ignore[union-attr]
    assert len(everything) == 12
    seen = client.search(None, "SEEN")[1][0].split()  # type: ignore[union-attr]
    unseen = client.search(None, "NOT SEEN")[1][0].split()  # type: ignore[union-attr]
    assert sorted(seen + unseen, key=int) == everything
    assert client.search(None, "OR SEEN UNSEEN")[1][0].split() == everything  # type: ignore[union-attr]
    assert client.search(None, "LARGER 1")[1][0].split() == everything  # type: ignore[union-attr]
    assert client.search(None, "SINCE 1-Jan-2024")[1][0].split() == everything  # type: ignore[union-attr]
    assert client.search(None, "BEFORE 1-Jan-2024")[1] == [b""]
    hits = client.search(None, "SUBJECT", '"#3"')[1][0].split()  # type: ignore[union-attr]
    assert hits == [b"4"]
    assert client.uid("SEARCH", "UID 2:3")[1] == [b"2 3"]
    with pytest.raises(imaplib.IMAP4.error, match="unknown search key"):
        client.search(None, "FROBNICATE")
    client.logout()


def test_deleted_stays_until_expunge_and_uids_are_never_reused(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX")
    client.store("1", "+FLAGS", "(\\Deleted)")
    assert client.select("INBOX")[1] == [b"12"]  # still there
    _, appended = client.append("INBOX", None, None, b"Subject: new\r\n\r\nbody\r\n")
    assert b"[APPENDUID" in appended[0]  # type: ignore[operator]
    new_uid = int(appended[0].split()[2].rstrip(b"]"))  # type: ignore[union-attr]
    assert new_uid == 13
    client.select("INBOX")
    _, expunged = client.expunge()
    assert expunged == [b"1"]
    _, appended = client.append("INBOX", None, None, b"Subject: newer\r\n\r\nbody\r\n")
    assert int(appended[0].split()[2].rstrip(b"]")) == 14  # type: ignore[union-attr]
    client.logout()


def test_copy_move_and_uid_expunge(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX")
    _, copied = client.copy("1:2", "Archive")
    assert b"[COPYUID" in copied[0]  # type: ignore[operator]
    typ, _ = client.uid("MOVE", "3", "Trash")
    assert typ == "OK"
    assert client.select("INBOX")[1] == [b"11"]
    client.uid("STORE", "4,5", "+FLAGS", "(\\Deleted)")
    client.uid("EXPUNGE", "4")
    assert client.select("INBOX")[1] == [b"10"]  # only UID 4 went; UID 5 stays \Deleted
    assert client.select("Trash")[1] == [b"1"]
    client.logout()


def test_idle_pushes_every_change_to_other_sessions(sandbox: Running) -> None:
    watcher = Driver("127.0.0.1", sandbox.server.port)
    watcher.run(Login("alice", PASSWORD))
    watcher.run(Select("INBOX"))
    tag = watcher.conn.send(Idle())
    watcher.next()  # "+ idling"
    writer = sandbox.client()
    writer.select("INBOX")

    def expect(kind: type) -> object:
        event = watcher.next()
        while not isinstance(event, kind):
            event = watcher.next()
        return event

    writer.append("INBOX", None, None, b"Subject: pushed\r\n\r\nhi\r\n")
    assert expect(Exists) == Exists(13)
    writer.store("2", "+FLAGS", "(\\Flagged)")
    flagged = expect(FetchResponse)
    assert "\\Flagged" in (flagged.flags or ())  # type: ignore[attr-defined]
    writer.store("1", "+FLAGS", "(\\Deleted)")
    writer.expunge()
    expect(FetchResponse)  # the \Deleted flag change
    assert expect(ExpungeResponse) == ExpungeResponse(1)
    watcher.conn.done()
    done, _ = watcher.wait(tag)
    assert done.status == "OK"
    writer.logout()


def test_imapclient(sandbox: Running) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=sandbox.server.port, ssl=False)
    client.login("alice", PASSWORD)
    client.select_folder("INBOX")
    ids = client.search(["ALL"])
    fetched = client.fetch(ids[:3], ["ENVELOPE", "FLAGS", "BODYSTRUCTURE"])
    assert len(fetched) == 3
    assert all(item[b"ENVELOPE"].subject for item in fetched.values())
    client.add_flags(ids[:1], [imapclient.SEEN])
    client.move(ids[-1:], "Archive")
    assert len(client.search(["ALL"])) == 11
    client.logout()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_check_with_write_tests_is_ok(sandbox: Running, security: str) -> None:
    port = sandbox.server.port if security == "starttls" else sandbox.server.tls_port
    report = asyncio.run(run_check(CheckOptions(
        host="localhost", port=port, security=security, user="alice", password=PASSWORD,
        ca_file=str(sandbox.ca_file), write_tests=True, timeout=5.0)))  # fmt: skip
    assert report.status == "ok", report.findings
    assert set(report.server["write_tests"]) == {"flag_roundtrip", "append_push"}


def test_append_with_a_synchronizing_literal_from_our_client(sandbox: Running) -> None:
    driver = Driver("127.0.0.1", sandbox.server.port)
    driver.run(Login("alice", PASSWORD))
    done, _ = driver.run(Append("Drafts", b"Subject: draft\r\n\r\n" + b"x" * 5000, ("\\Draft",)))
    assert done.status == "OK"
    assert done.code is not None
    assert done.code.name == "APPENDUID"


def test_sandbox_command(tmp_path: Path) -> None:
    proc, text = sandbox_process(
        "--port", "0", "--tls-port", "0", "--smtp-port", "0", "--admin-port", "0",
        "--demo", "7", "--user", "carol:c-pw", "--data-dir", str(tmp_path),
    )  # fmt: skip
    tls_port = int(text.split("implicit TLS port:")[1].split()[0])
    ca_file = text.split("CA file:")[1].split()[0]
    context = ssl.create_default_context(cafile=ca_file)
    client = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=context)
    client.login("carol", "c-pw")
    assert client.select("INBOX")[1] == [b"7"]
    client.logout()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600


def test_mailbox_management_and_subscriptions(sandbox: Running) -> None:
    client = sandbox.client()
    assert client.create("Projects/2024")[0] == "OK"
    assert client.create("Projects/2024")[0] == "NO"  # already exists
    _, listed = client.list('""', "Projects/%")
    assert listed == [b'(\\HasNoChildren) "/" Projects/2024']
    assert client.rename("Projects/2024", "Projects/Old")[0] == "OK"
    assert client.unsubscribe("Projects/Old")[0] == "OK"
    _, subscribed = client.lsub('""', "Projects/*")
    assert subscribed == [None]
    assert client.delete("Projects/Old")[0] == "OK"
    assert client.delete("INBOX")[0] == "NO"
    assert client.select("No/Such")[0] == "NO"
    assert client.append("No/Such", None, None, b"x")[0] == "NO"  # [TRYCREATE]
    client.logout()


def test_body_parts_by_number(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX", readonly=True)
    _, found = client.search(None, "HEADER", "Content-Type", "multipart")
    number = (found[0] or b"").split()[0]
    _, data = client.fetch(number, "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.TEXT])")
    flat = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in data)
    assert b"BODY[1]" in flat
    assert b"Content-Type: text/plain" in flat
    client.logout()


def test_condstore_and_read_only(sandbox: Running) -> None:
    from imapscope.imap import Enable, Fetch, Store, UntaggedStatus  # noqa: PLC0415

    driver = Driver("127.0.0.1", sandbox.server.port)
    driver.run(Login("alice", PASSWORD))
    driver.run(Enable(("CONDSTORE",)))
    _, selected = driver.run(Select("INBOX"))
    highest = next(
        e.code.value for e in selected
        if isinstance(e, UntaggedStatus) and e.code and e.code.name == "HIGHESTMODSEQ"
    )  # fmt: skip
    _, untagged = driver.run(Fetch("1", "(MODSEQ FLAGS)"))
    before = next(e for e in untagged if isinstance(e, FetchResponse)).modseq
    assert before is not None
    done, untagged = driver.run(Store("1", ("\\Flagged",), unchanged_since=before))
    after = next(e for e in untagged if isinstance(e, FetchResponse)).modseq
    assert after is not None
    assert after > before
    done, _ = driver.run(Store("1", ("\\Seen",), unchanged_since=before))
    assert done.code is not None
    assert (done.code.name, done.code.value) == ("MODIFIED", "1")
    # Only the message changed since the mailbox's HIGHESTMODSEQ at SELECT comes back.
    _, untagged = driver.run(Fetch("1:*", "(FLAGS)", changed_since=highest))  # type: ignore[arg-type]
    assert [e.seq for e in untagged if isinstance(e, FetchResponse)] == [1]
    driver.run(Select("INBOX", readonly=True))
    done, _ = driver.run(Store("1", ("\\Deleted",)))
    assert (done.status, done.code.name if done.code else None) == ("NO", "READ-ONLY")


def test_authenticate_plain_and_open_mode(tmp_path: Path) -> None:
    from imapscope.imap import Mechanism  # noqa: PLC0415

    store = build_store([("alice", PASSWORD)])
    store.open_mode = True
    server = SandboxServer(store, port=0)
    with running(server):
        for sasl_ir in (True, False):
            driver = Driver("127.0.0.1", server.port)
            if not sasl_ir:
                driver.conn.capabilities -= {"SASL-IR"}
            done, _ = driver.login_sasl(Mechanism("PLAIN", "newcomer", "anything"))
            assert done.status == "OK"
    assert "newcomer" in store.users


def test_more_search_keys(sandbox: Running) -> None:
    client = sandbox.client()
    client.select("INBOX")
    client.store("2", "+FLAGS", "($Important)")
    assert client.search(None, "KEYWORD", "$Important")[1] == [b"2"]
    assert client.search(None, "TEXT", "mailbox")[1][0]  # the demo text uses the word
    assert client.search(None, "BODY", "no-such-word-anywhere")[1] == [b""]
    assert client.search(None, "SENTSINCE", "1-Jan-2020")[1][0]
    assert client.search(None, "2:3 UNDELETED")[1] == [b"2 3"]
    client.store("3", "+FLAGS", "(\\Deleted)")
    client.close()  # CLOSE expunges \Deleted silently
    assert client.select("INBOX")[1] == [b"11"]
    client.logout()


def test_smtp_delivery_is_pushed_to_idle(sandbox: Running) -> None:
    watcher = Driver("127.0.0.1", sandbox.server.port)
    watcher.run(Login("alice", PASSWORD))
    watcher.run(Select("INBOX"))
    tag = watcher.conn.send(Idle())
    watcher.next()  # "+ idling"
    with smtplib.SMTP("127.0.0.1", sandbox.server.smtp_port or 0) as smtp:
        refused = smtp.sendmail(
            "sender@example.test",
            ["alice@example.test"],
            b"From: sender@example.test\r\nSubject: over SMTP\r\n\r\nhello\r\n",
        )
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("sender@example.test", ["nobody@example.test"], b"Subject: x\r\n\r\n")
    event = watcher.next()
    while not isinstance(event, Exists):
        event = watcher.next()
    assert event == Exists(13)
    watcher.conn.done()
    watcher.wait(tag)
    client = sandbox.client()
    client.select("INBOX", readonly=True)
    _, data = client.fetch("13", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: over SMTP" in data[0][1]  # type: ignore[index]
    client.logout()


def test_demo_command_checks_its_own_sandbox(tmp_path: Path) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from imapscope.cli import app  # noqa: PLC0415

    result = CliRunner().invoke(
        app,
        ["demo", "--once", "--port", "0", "--tls-port", "0", "--smtp-port", "0",
         "--ui-port", "0", "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Every step passed" in " ".join(result.output.split())
    assert "flag_roundtrip" in result.output
    assert "CA file:" in result.output
    assert str(tmp_path / "ca.pem") in result.output
    # ... and serve with its three accounts, each in the state it is meant to show.
    text = " ".join(result.output.split())
    assert "imapscope serve (demo) on http://127.0.0.1:" in text
    assert "token (for the web UI and API): isk_" in text
    for name, state in [("healthy", "idle"), ("wrong password", "auth_error"),
                        ("wrong TLS mode", "connect_error")]:  # fmt: skip
        assert f"│ {name} │ {state} │ {state} │" in text.replace("  ", " ") or (
            re.search(rf"{name}\s*│\s*{state}\s*│\s*{state}", result.output)
        ), result.output
    assert "AUTH_FAILED" in text
    assert "TLS_ON_PLAINTEXT_PORT" in text
    assert "imapscope accounts list --data-dir " in text  # where its accounts can be seen
    # The wrong-TLS-mode account's handshake bytes are never echoed to the console.
    assert "unrecognised" not in result.output
    assert not [c for c in result.output if ord(c) < 32 and c not in "\n\t"]


def test_mbsync_two_way_sync(sandbox: Running, tmp_path: Path) -> None:
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount sandbox\nHost localhost\nPort {sandbox.server.tls_port}\nUser alice\n"
        f"Pass {PASSWORD}\nSSLType IMAPS\nCertificateFile {sandbox.ca_file}\n\n"
        "IMAPStore remote\nAccount sandbox\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel all\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\n"
        "SyncState *\n"
    )

    def sync() -> str:
        done = subprocess.run(
            ["mbsync", "-c", str(config), "-V", "all"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    def local_files(folder: str) -> list[Path]:
        return sorted((local / folder / "cur").iterdir()) + sorted(
            (local / folder / "new").iterdir()
        )

    sync()
    assert len(local_files("INBOX")) == 12
    assert len(local_files("Sent")) == 5
    # A flag set on the server, and one set locally (maildir info ":2,S"), and a new local mail.
    client = sandbox.client()
    client.select("INBOX")
    client.store("1", "+FLAGS", "(\\Flagged)")
    unseen = int((client.search(None, "UNSEEN")[1][0] or b"0").split()[0])
    _, uid_data = client.fetch(str(unseen), "(UID)")
    client.logout()
    unseen_uid = int(re.search(rb"UID (\d+)", uid_data[0]).group(1))  # type: ignore[union-attr, arg-type]
    marked = next(p for p in local_files("INBOX") if f",U={unseen_uid}:" in p.name)
    marked.rename(marked.parent.parent / "cur" / (marked.name.split(":")[0] + ":2,S"))
    (local / "INBOX" / "new" / "local.1.host").write_bytes(
        b"From: me@example.test\nSubject: written locally\n\nhello\n"
    )
    sync()
    first = next(p for p in local_files("INBOX") if ",U=1:" in p.name)
    assert "F" in first.name.split(":2,")[1]  # the server's \Flagged reached the maildir
    client = sandbox.client()
    client.select("INBOX", readonly=True)
    assert client.select("INBOX", readonly=True)[1] == [b"13"]
    flags = client.uid("FETCH", str(unseen_uid), "(FLAGS)")[1][0]
    assert b"\\Seen" in flags  # type: ignore[operator]
    assert client.search(None, "SUBJECT", '"written locally"')[1][0]
    client.logout()
    # Nothing changed since: the second sync moves nothing and both sides stay as they are.
    sync()
    assert len(local_files("INBOX")) == 13
    client = sandbox.client()
    assert client.select("INBOX", readonly=True)[1] == [b"13"]
    client.logout()


def test_data_dir_keeps_mail_across_restarts(tmp_path: Path) -> None:
    from imapscope.sandbox import open_store  # noqa: PLC0415

    database = tmp_path / "sandbox.sqlite3"

    first = SandboxServer(
        open_store([("alice", PASSWORD)], demo_messages=3, database=database), port=0
    )
    with running(first):
        client = imaplib.IMAP4("127.0.0.1", first.port)
        client.login("alice", PASSWORD)
        client.create("Kept")
        client.append("Kept", "(\\Flagged)", None, b"Subject: keep me\r\n\r\nbody\r\n")
        client.select("INBOX")
        client.store("2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        client.unsubscribe("Archive")
        before = client.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")[1]
        client.logout()

    # A new process would do the same: open the same database.
    second = SandboxServer(
        open_store([("alice", "ignored"), ("bob", "b-pw")], database=database), port=0
    )
    with running(second):
        client = imaplib.IMAP4("127.0.0.1", second.port)
        client.login("alice", PASSWORD)  # alice kept her password; --user does not overwrite it
        assert client.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")[1] == before
        client.select("Kept", readonly=True)
        _, data = client.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"\\Flagged" in data[0][0]  # type: ignore[index]
        assert b"keep me" in data[0][1]  # type: ignore[index]
        assert client.lsub('""', "Archive")[1] == [None]
        client.logout()
        newcomer = imaplib.IMAP4("127.0.0.1", second.port)
        newcomer.login("bob", "b-pw")  # a listed user the database lacked was added
        newcomer.logout()


def test_a_handler_bug_answers_serverbug_and_the_session_goes_on(
    sandbox: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imapscope.sandbox import Session  # noqa: PLC0415

    def broken(self: object, tag: str, command: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Session, "do_NOOP", broken)
    client = sandbox.client()
    with pytest.raises(imaplib.IMAP4.error, match="SERVERBUG"):
        client.noop()
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_list_status(sandbox: Running) -> None:
    from imapscope.imap import List as ListCommand  # noqa: PLC0415
    from imapscope.imap import ListResponse, StatusResponse  # noqa: PLC0415

    driver = Driver("127.0.0.1", sandbox.server.port)
    driver.run(Login("alice", PASSWORD))
    done, untagged = driver.run(ListCommand("", "*", returns=("STATUS (MESSAGES UNSEEN)",)))
    assert done.status == "OK"
    kinds = [type(e).__name__ for e in untagged]
    assert kinds[:2] == ["ListResponse", "StatusResponse"]  # each STATUS right after its LIST
    statuses = {e.mailbox: e.items for e in untagged if isinstance(e, StatusResponse)}
    assert statuses["Sent"]["MESSAGES"] == 5
    assert set(statuses["INBOX"]) == {"MESSAGES", "UNSEEN"}
    assert len([e for e in untagged if isinstance(e, ListResponse)]) == len(statuses)


def test_xoauth2_with_good_and_bad_tokens(sandbox: Running) -> None:
    from imapscope.imap import Mechanism  # noqa: PLC0415

    driver = Driver("127.0.0.1", sandbox.server.port)
    done, _ = driver.login_sasl(Mechanism("LOGIN", "alice", PASSWORD))  # prompts, one by one
    assert done.status == "OK"

    driver = Driver("127.0.0.1", sandbox.server.port)
    done, _ = driver.login_sasl(Mechanism("XOAUTH2", "alice", PASSWORD))
    assert done.status == "OK"
    driver = Driver("127.0.0.1", sandbox.server.port)
    done, _ = driver.login_sasl(Mechanism("XOAUTH2", "alice", "expired-token"))
    assert (done.status, done.code.name if done.code else None) == ("NO", "AUTHENTICATIONFAILED")
    report = asyncio.run(run_check(CheckOptions(
        host="127.0.0.1", port=sandbox.server.port, security="plain", allow_plaintext=True,
        user="alice", oauth2_token="expired-token", timeout=3.0)))  # fmt: skip
    assert [f.code for f in report.findings if f.severity == "error"] == ["OAUTH_TOKEN_REJECTED"]


def test_shared_namespace_across_users(sandbox: Running) -> None:
    alice = sandbox.client()
    _, namespace = alice.namespace()
    assert namespace == [b'(("" "/")) NIL (("Shared/" "/"))']
    assert alice.list('""', "Shared/*")[1] == [b'(\\HasNoChildren) "/" Shared/Team']
    assert b"Shared/" not in b" ".join(alice.list()[1])  # type: ignore[arg-type]
    assert alice.create("Shared/Mine")[0] == "NO"
    watcher = Driver("127.0.0.1", sandbox.server.port)
    watcher.run(Login("bob", "bob-pw"))
    _, selected = watcher.run(Select("Shared/Team"))
    assert Exists(3) in selected
    tag = watcher.conn.send(Idle())
    watcher.next()
    alice.append("Shared/Team", None, None, b"Subject: for the team\r\n\r\nhi\r\n")
    event = watcher.next()
    while not isinstance(event, Exists):
        event = watcher.next()
    assert event == Exists(4)  # bob's IDLE saw alice's message at once
    watcher.conn.done()
    watcher.wait(tag)
    alice.logout()
    report = asyncio.run(run_check(CheckOptions(
        host="127.0.0.1", port=sandbox.server.port, security="plain", allow_plaintext=True,
        user="alice", password=PASSWORD, timeout=3.0)))  # fmt: skip
    assert report.namespaces["shared"] == [{"prefix": "Shared/", "delimiter": "/"}]
    assert any(m["name"] == "Shared/Team" for m in report.mailboxes)


def test_qresync(sandbox: Running) -> None:
    from imapscope.imap import Enable, Fetch, Noop, UntaggedStatus, Vanished  # noqa: PLC0415

    driver = Driver("127.0.0.1", sandbox.server.port)
    driver.run(Login("alice", PASSWORD))
    done, _ = driver.run(Select("INBOX", qresync=(1, 1)))
    assert done.status == "BAD"  # QRESYNC must be enabled first
    driver.run(Enable(("QRESYNC",)))
    _, selected = driver.run(Select("INBOX"))
    codes = {
        e.code.name: e.code.value for e in selected if isinstance(e, UntaggedStatus) and e.code
    }
    validity, highest = codes["UIDVALIDITY"], codes["HIGHESTMODSEQ"]
    driver.run(Select("Drafts"))  # away while another client changes INBOX
    other = sandbox.client()
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Flagged)")
    other.store("1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    # Back with QRESYNC: what vanished since, and what changed, in one go.
    _, untagged = driver.run(Select("INBOX", qresync=(validity, highest)))  # type: ignore[arg-type]
    assert Vanished("1", earlier=True) in untagged
    changed = [e for e in untagged if isinstance(e, FetchResponse)]
    assert [(e.uid, "\\Flagged" in (e.flags or ())) for e in changed] == [(2, True)]
    # Expunges while selected come as VANISHED, not EXPUNGE, once QRESYNC is on.
    other.store("1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    _, untagged = driver.run(Noop())
    assert Vanished("2", earlier=False) in untagged
    assert not [e for e in untagged if isinstance(e, ExpungeResponse)]
    _, untagged = driver.run(
        Fetch("1:*", "(FLAGS)", uid=True, changed_since=highest, vanished=True)
    )  # type: ignore[arg-type]
    assert Vanished("1:2", earlier=True) in untagged
    other.logout()


def test_imapclient_idle(sandbox: Running) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=sandbox.server.port, ssl=False)
    client.login("alice", PASSWORD)
    client.select_folder("INBOX")
    client.idle()
    writer = sandbox.client()
    writer.append("INBOX", None, None, b"Subject: idle test\r\n\r\nhi\r\n")
    responses = client.idle_check(timeout=5)
    client.idle_done()
    assert (13, b"EXISTS") in responses
    writer.logout()
    client.logout()


def test_binary_preview_and_object_ids(sandbox: Running) -> None:
    from email import message_from_bytes  # noqa: PLC0415

    from imapscope.imap import Fetch  # noqa: PLC0415

    client = sandbox.client()
    client.select("INBOX", readonly=True)
    number = int((client.search(None, "HEADER", "Content-Type", "mixed")[1][0] or b"").split()[0])
    _, raw = client.fetch(str(number), "(BODY.PEEK[])")
    client.logout()
    attachment = message_from_bytes(raw[0][1]).get_payload()[1].get_payload(decode=True)  # type: ignore[index, union-attr]
    driver = Driver("127.0.0.1", sandbox.server.port)
    driver.run(Login("alice", PASSWORD))
    driver.run(Select("INBOX", readonly=True))
    _, untagged = driver.run(Fetch(str(number), "(BINARY.PEEK[2] PREVIEW EMAILID THREADID)"))
    fetched = next(e for e in untagged if isinstance(e, FetchResponse))
    assert fetched.sections["BINARY[2]"] == attachment  # base64 undone
    preview = fetched.sections["PREVIEW"] or b""
    assert 0 < len(preview) <= 200
    assert fetched.item("EMAILID")[0].startswith("M")  # type: ignore[index, union-attr]
    assert fetched.item("THREADID")[0].startswith("T")  # type: ignore[index, union-attr]


def test_config_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from imapscope.cli import app  # noqa: PLC0415
    from imapscope.sandbox import ConfigError, load_config  # noqa: PLC0415

    good = tmp_path / "sandbox.toml"
    good.write_text(
        'open = false\nusers = [{ name = "carol", password = "c-pw" }]\n'
        '[[faults]]\nspec = "LOGIN:no:code=UNAVAILABLE"\n'
        '[[faults]]\npersona = "gmail-web-login"\n'
        '[[faults]]\ncommand = "FETCH"\naction = "delay"\ndelay_ms = 5\n'
    )
    config = load_config(good)
    assert config.users == [("carol", "c-pw")]
    assert [(r.command, r.action) for r in config.faults] == [
        ("LOGIN", "no"),
        ("LOGIN", "no"),
        ("AUTHENTICATE", "no"),
        ("FETCH", "delay"),
    ]
    for text, message in [("users = [{ name = 'x' }]", "needs a name and a password"),
                          ("colour = 'red'", "unknown setting"),
                          ("[[faults]]\naction = 'explode'", "faults\\[0\\]"),
                          ("not toml [", "not valid TOML")]:  # fmt: skip
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(bad)
    result = CliRunner().invoke(app, ["sandbox", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 3
    assert "cannot read it" in " ".join(result.output.split())


def test_store_refusals_are_no_with_a_code_and_the_session_goes_on(sandbox: Running) -> None:
    client = sandbox.client()
    refusals = [
        client.create("Archive"),
        client.delete("No/Such"),
        client.rename("No/Such", "Other"),
        client.subscribe("No/Such"),
        client.status("No/Such", "(MESSAGES)"),
        client.select("No/Such"),
    ]
    for status, data in refusals:
        assert status == "NO"
        assert data[0].startswith(b"["), data  # a response code says which refusal it is
    assert client.select("INBOX")[0] == "OK"  # the session is not harmed
    client.logout()


class _Raw:
    """A logged-in, INBOX-selected session on a raw socket: a line in, the lines until the one
    that starts with ``until`` out (an AssertionError if the server closes the connection)."""

    def __init__(self, sandbox: Running) -> None:
        self.sock = socket.create_connection(("127.0.0.1", sandbox.server.port), timeout=10)
        self.lines = self.sock.makefile("rb")
        self.lines.readline()  # the greeting
        assert self.run(f'a LOGIN alice "{PASSWORD}"'.encode(), b"a ")[-1].startswith(b"a OK")
        assert self.run(b"b SELECT INBOX", b"b ")[-1].startswith(b"b OK")

    def run(self, line: bytes, until: bytes) -> list[bytes]:
        self.sock.sendall(line + b"\r\n")
        got = []
        while not got or not got[-1].startswith(until):
            got.append(self.lines.readline())
            assert got[-1], f"the server closed the connection after {line!r}"
        return got


@pytest.mark.parametrize(
    "command",
    [b"SELECT INBOX (QRESYNC (1x 2))", b"SELECT INBOX (QRESYNC)", b'ID ("name" "x" "version")',
     b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE)", b"STORE 1 (UNCHANGEDSINCE 5x) +FLAGS (\\Seen)",
     b"FETCH 1:x FLAGS", b"COPY 1:: Archive", b"FE\rTCH 1 FLAGS"],
)  # fmt: skip
def test_malformed_arguments_are_answered_bad_and_the_session_goes_on(
    sandbox: Running, command: bytes
) -> None:
    """As Dovecot does: BAD for the command, the connection kept. Each of these ended the
    session unanswered (found by fuzzing): the parser raised ValueError, IndexError or a
    command's own (client-side) check, or the BAD's text carried the command's bare CR."""
    raw = _Raw(sandbox)
    answer = raw.run(b"c " + command, b"c ")[-1]
    assert answer.startswith(b"c BAD ")
    assert b"\r" not in answer[:-2]
    assert raw.run(b"d NOOP", b"d ")[-1].startswith(b"d OK")
    raw.sock.close()


@pytest.mark.parametrize("line", [b"a(b NOOP", b"a{b NOOP", b'a"b NOOP', b"f\xc3\xbcr"])
def test_a_line_without_a_tag_a_response_can_carry_is_answered_untagged(
    sandbox: Running, line: bytes
) -> None:
    """ "* BAD", as Dovecot answers a line it cannot take a tag from; these were taken as tags
    (or answered with the tag "*"), which no response can carry: the session ended."""
    raw = _Raw(sandbox)
    assert raw.run(line, b"* BAD ")[-1].startswith(b"* BAD ")
    assert raw.run(b"d NOOP", b"d ")[-1].startswith(b"d OK")
    raw.sock.close()


def test_a_bad_message_set_among_search_criteria_is_bad_not_a_server_bug(
    sandbox: Running,
) -> None:
    raw = _Raw(sandbox)
    answer = raw.run(b"c SEARCH 1:x", b"c ")[-1]
    assert answer.startswith(b"c BAD ")
    assert b"SERVERBUG" not in answer
    assert b"invalid messageset" in answer
    raw.sock.close()


def test_stop_with_clients_connected_reports_nothing(tmp_path: Path) -> None:
    """Stopping ends every session quietly: on Python 3.11 a cancelled session made asyncio's
    start_server callback log "Exception in callback" with a CancelledError at each stop."""
    server = SandboxServer(build_store([("alice", PASSWORD)]), port=0)
    reported: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, c: reported.append(c))
        await server.start()
        clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        for reader, _ in clients:
            assert (await reader.readline()).startswith(b"* OK")
        await server.stop()
        for reader, writer in clients:
            assert await reader.read() == b""  # closed by the server
            writer.close()
        await asyncio.sleep(0.05)  # the done callbacks have run

    asyncio.run(main())
    assert reported == []
