"""Servers that trickle, flood, lie or echo secrets: every step has a deadline and a byte budget,
every failure a name, and no secret of the account comes back out.

These are the check gaps and limits of issue "one finding everywhere": each test here failed on
the code before it (a run that never ended, a traceback, a wrong code or an echoed password).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imapscope.cli import app
from imapscope.imap import Greeting, ListResponse, Noop
from imapscope.imap._buffer import ReceiveBuffer
from imapscope.imap._errors import LimitExceededError
from imapscope.net import ImapConnection, NetTimeoutError, SecretMask
from imapscope.probe import CheckOptions, Report, run_check
from imapscope.store import AccountSpec, Store
from imapscope.sync import AccountSync, Backoff, SyncOptions
from tests.hostile import hostile
from tests.scripted import DnsZone, ScriptedImap, dns_server, no, ok, serve
from tests.servers.rig import RunningServer, TestCA

SECRET = "s3cret-Pa55word!"
runner = CliRunner()


def check(**options: object) -> Report:
    options.setdefault("timeout", 2.0)
    return asyncio.run(run_check(CheckOptions(**options)))  # type: ignore[arg-type]


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings if f.severity != "info"]


# --- deadlines: a whole step, however the server paces its bytes -------------------------------


@pytest.mark.parametrize("behaviour", ["trickle_greeting", "bye_every_command"])
def test_a_step_has_a_total_deadline(behaviour: str) -> None:
    timeout = 2.0
    with hostile(behaviour) as port:
        started = time.monotonic()
        report = check(host="127.0.0.1", port=port, security="plain", allow_plaintext=True,
                       user="alice", password=SECRET, timeout=timeout)  # fmt: skip
        elapsed = time.monotonic() - started
    assert codes(report) == ["STEP_DEADLINE_EXCEEDED"]
    # The stated timeout plus a second (the bound): the old per-read timeout never ended.
    assert elapsed < timeout + 1.0, elapsed
    headline = report.headline
    assert headline is not None
    assert "did not complete" in headline.evidence[0]


def test_a_read_has_its_own_timeout_under_a_longer_step_deadline() -> None:
    """A step may be given longer than one read (a FETCH batch's deadline): a server silent
    for longer than a read's timeout fails the read ("no answer within"), not the step at its
    end; under the default deadline (the read's own timeout) the step's deadline names it (and
    the read then runs without a timer of its own)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up; nothing is answered
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for deadline, said in (
                (60.0, "no answer within 0.3s"),
                (None, "the noop step did not complete within 0.3s"),
            ):
                conn = await ImapConnection.open(
                    "127.0.0.1", "127.0.0.1", port, security="plain", context=None, timeout=0.3
                )
                await conn.greeting()
                with pytest.raises(NetTimeoutError, match=said):
                    await conn.run(Noop(), deadline=deadline)
                await conn.close()

    asyncio.run(main())


def test_a_close_the_server_leaves_unanswered_drops_the_socket(tmp_path: Path) -> None:
    """A TLS server that neither answers our close_notify nor hangs up (Cyrus, past the close
    timeout): the socket is closed when the timeout ends, not left to the garbage collector
    (a connection per account, on every restart)."""
    from imapscope.net._stream import close_stream  # noqa: PLC0415

    ca = TestCA(tmp_path / "ca")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(ca.server.combined))
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        with server_context.wrap_socket(raw, server_side=True):  # the handshake, then silence
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> int:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", listener.getsockname()[1], ssl=ca.client_context(),
            server_hostname="localhost",
        )  # fmt: skip
        sock = writer.get_extra_info("socket")
        await close_stream(writer, 0.2)
        await asyncio.sleep(0)  # the transport lets go of its socket on the next turn
        return int(sock.fileno())

    try:
        assert asyncio.run(main()) == -1
    finally:
        done.set()
        thread.join(10)
        listener.close()


# --- byte budgets ------------------------------------------------------------------------------


def test_literals_are_refused_when_announced_and_in_total_per_line() -> None:
    buffer = ReceiveBuffer(max_literal=1000, max_frame_literals=1500)
    buffer.feed(b"* 1 FETCH (BODY[1] {800}\r\n" + b"x" * 800 + b" BODY[2] {800}\r\n")
    with pytest.raises(LimitExceededError, match="total 1600 bytes"):
        buffer.next_frame()  # the second literal is refused when announced
    single = ReceiveBuffer(max_literal=1000)
    single.feed(b"* 1 FETCH (BODY[] {209715200}\r\n")
    with pytest.raises(LimitExceededError, match="exceeds the limit"):
        single.next_frame()


def test_check_memory_stays_bounded_against_four_huge_literals(tmp_path: Path) -> None:
    """Four 200 MiB literals in one FETCH: the check names it and stays under 250 MB RSS (it
    took 1.9 GB before)."""
    # A wrapper process reports its child's peak RSS (this test process's other children, the
    # rig's servers and browsers, must not count).
    wrapper = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(p.stdout); "
        "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))"
    )
    with hostile("huge_literals") as port:
        process = subprocess.run(
            [sys.executable, "-c", wrapper, sys.executable, "-m", "imapscope", "check",
             "127.0.0.1", "--port", str(port), "--security", "plain", "--allow-plaintext",
             "--user", "alice", "--password-env", "PW", "--json", "--timeout", "5"],
            env={**os.environ, "PW": SECRET}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    peak_kib = int(process.stderr.strip().splitlines()[-1])
    report = json.loads(process.stdout)
    assert report["headline"] == "RESPONSE_TOO_LARGE", report["findings"]
    assert len(process.stdout) < 1_000_000  # the report is not the flood
    assert peak_kib < 250 * 1024, f"peak RSS {peak_kib} KiB"


# --- secrets the server repeats ------------------------------------------------------------------


def test_a_server_that_echoes_the_password_cannot_put_it_anywhere() -> None:
    encoded = base64.b64encode(b"\0alice\0" + SECRET.encode()).decode()
    with hostile("echo_secret", secret=SECRET) as port:
        report = check(host="127.0.0.1", port=port, security="plain", allow_plaintext=True,
                       user="alice", password=SECRET)  # fmt: skip
        result = runner.invoke(app, ["check", "127.0.0.1", "--port", str(port), "--security",
                                     "plain", "--allow-plaintext", "--user", "alice",
                                     "--password-env", "PW", "--transcript"],
                               env={"PW": SECRET})  # fmt: skip
    assert codes(report) == ["AUTH_FAILED"]
    texts = [json.dumps(report.to_json()), result.output]
    assert "AUTH_FAILED" in result.output
    for text in texts:
        assert SECRET not in text
        assert encoded not in text
        assert encoded[8:-4] not in text  # no run of the base64 form either
    assert "***" in report.findings[0].evidence[0]  # masked, not dropped: the server's words stay


def test_the_mask_finds_a_secret_split_across_reads_and_in_any_base64_alignment() -> None:
    mask = SecretMask([SECRET])
    out = mask(b"* NO bad " + SECRET.encode()[:5]) + mask(SECRET.encode()[5:] + b" ok\r\n")
    assert SECRET.encode() not in out
    assert out.endswith(b" ok\r\n")
    for prefix in (b"", b"\0", b"\0\0", b"user\0"):
        blob = base64.b64encode(prefix + SECRET.encode())
        masked = SecretMask([SECRET])(b"* NO " + blob + b"\r\n")
        assert blob not in masked
        assert len(masked) == len(b"* NO " + blob + b"\r\n")  # framing kept


class _HeldByLength(SecretMask):
    """The mask as it was before it searched for a pattern's first byte: every length tried."""

    def _hold(self, data: bytes) -> int:
        hold = 0
        for pattern in self.patterns:
            for size in range(min(len(pattern) - 1, len(data)), hold, -1):
                if data.endswith(pattern[:size]):
                    hold = size
                    break
        return hold


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(alphabet="abAB=+/0", min_size=4, max_size=10),
    pieces=st.lists(st.binary(max_size=12) | st.sampled_from([b"a", b"ab", b"AB", b"=", b"YW"]),
                    max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    embed=st.booleans(),
)  # fmt: skip
def test_the_mask_holds_back_what_it_held_back_before(
    secret: str, pieces: list[bytes], cuts: list[int], embed: bool
) -> None:
    """Whatever the stream and however it is cut into reads (a small alphabet makes partial
    matches and base64 forms likely), the mask gives what its former prefix scan gave, and no
    secret survives it."""
    stream = b"".join(pieces)
    if embed:
        stream = stream[: len(stream) // 2] + secret.encode() + stream[len(stream) // 2 :]
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reads = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    new, old = SecretMask([secret]), _HeldByLength([secret])
    out = b"".join(new(r) for r in reads) + new.flush()
    assert out == b"".join(old(r) for r in reads) + old.flush()
    if embed:
        assert secret.encode() not in out


# --- names the check got wrong ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["exa..mple.com", "a" * 64 + ".example.com", "bad host.example"])
def test_a_host_name_idna_rejects_is_named_not_a_traceback(host: str) -> None:
    result = runner.invoke(app, ["check", host, "--security", "tls"])
    assert result.exit_code == 2, result.output
    assert "HOST_INVALID" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_insecure_still_warns_about_an_expired_certificate(
    start_dovecot: object, test_ca: TestCA
) -> None:
    server: RunningServer = start_dovecot(cert=test_ca.expired("insecure-expired"))  # type: ignore[operator]
    report = check(host="localhost", port=server.tls_port, security="tls", insecure=True,
                   user="alice", password=server.users["alice"], timeout=5.0)  # fmt: skip
    expired = [f for f in report.findings if f.code == "CERT_EXPIRED"]
    assert expired, report.findings
    assert expired[0].severity == "warning"
    assert "--insecure" in expired[0].summary
    assert report.status == "warning"


def test_three_sent_folders_without_special_use_warn_and_name_them() -> None:
    folders = ["INBOX", "Sent", "Sent Items", "INBOX/Sent Messages", "Drafts"]

    def listing(tag: str, _: object) -> list[object]:
        return [ListResponse("LIST", (), "/", n, n.encode()) for n in folders] + [ok(tag)]

    server = ScriptedImap(replies={"LIST": listing})  # type: ignore[dict-item]
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p")  # fmt: skip
    found = [f for f in report.findings if f.code == "FOLDER_MAPPING_AMBIGUOUS"]
    assert [f.severity for f in found] == ["warning"]
    assert found[0].evidence == ("Sent could be any of: Sent, Sent Items, INBOX/Sent Messages",)


def test_nothing_published_and_guesses_refused_is_discovery_none() -> None:
    zone = DnsZone(records={("mail.nothing-here.test", "A"): ["127.0.0.1"]})
    with dns_server(zone):
        report = check(host="nobody@nothing-here.test", nameserver=f"127.0.0.1:{zone.port}",
                       port=None)  # fmt: skip
    assert codes(report) == ["DISCOVERY_NONE"]
    evidence = " ".join(report.findings[0].evidence)
    assert "mail.nothing-here.test:993 does not answer" in evidence
    assert "autoconfig" in evidence


PROVIDERS = [
    # Yandex says the same for a wrong password and for IMAP switched off.
    ("Yandex IMAP4rev1 ready", "[AUTHENTICATIONFAILED] LOGIN Invalid credentials or IMAP is "
     "disabled sc=ebI8JB0ug4Y1", "AUTH_FAILED", "Access by IMAP"),
    # iCloud greets as "iSCREAM"; it takes app-specific passwords only.
    ("iSCREAM ready to rumble (15E205) st11p00mm-iscream022",
     "[AUTHENTICATIONFAILED] Authentication failed", "AUTH_FAILED", "app-specific password"),
    ("Welcome! IMAP Server up and ready to accept your request",
     "[AUTHENTICATIONFAILED] LOGIN Invalid credentials", "AUTH_FAILED", "app password"),  # Yahoo
    ("The Microsoft Exchange IMAP4 service is ready.",
     "LOGIN failed. Login to your account via a web browser to verify your identity.",
     "WEB_LOGIN_REQUIRED", "webmail"),
    ("IMAP server ready", "You are yet to enable IMAP for your account. Please contact your "
     "administrator", "IMAP_DISABLED_FOR_ACCOUNT", "Enable IMAP"),  # Zoho
]  # fmt: skip


@pytest.mark.parametrize(("greeting", "said", "code", "fix"), PROVIDERS)
def test_provider_wording(greeting: str, said: str, code: str, fix: str) -> None:
    server = ScriptedImap(capabilities=("IMAP4rev1", "IDLE"),
                          greeting=Greeting("OK", None, greeting),
                          replies={"LOGIN": lambda tag, c: [no(tag, said)]})  # fmt: skip
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="someone@example.test", password=SECRET)  # fmt: skip
    assert codes(report) == [code]
    assert fix in report.findings[0].fix


# --- a bug of ours: named, logged with an id, retried ------------------------------------------


def test_an_unexpected_exception_is_an_internal_error_entry_and_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import imapscope.sync._engine as engine_module  # noqa: PLC0415

    async def broken(*_: object, **__: object) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr(engine_module, "open_session", broken)
    spec = AccountSpec(email="a@example.test", host="127.0.0.1", port=1, security="tls",
                       username="a", poll_interval=60)  # fmt: skip

    async def scenario() -> tuple[str, str, object]:
        store = await Store.open(tmp_path / "data")
        added = await store.add_account(spec, SECRET)
        sync = AccountSync(store, added.id, SyncOptions(backoff=Backoff(first=30)))
        task = asyncio.create_task(sync.run())
        try:
            async with asyncio.timeout(10):
                while not (errors := await store.errors(added.id)):
                    await asyncio.sleep(0.02)
                while (await store.account(added.id)).next_attempt is None:
                    await asyncio.sleep(0.02)
            return errors[0].code, errors[0].evidence[0], sync.state
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=10)
            await store.close()

    with caplog.at_level(logging.ERROR, logger="imapscope.serve"):
        code, evidence, state = asyncio.run(scenario())
    assert code == "INTERNAL_ERROR"
    assert state == "connect_error"
    error_id = evidence.split()[2].rstrip(":")
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
