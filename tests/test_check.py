"""imapscope check against real servers: healthy ones pass, broken ones are named.

Every finding code the ladder can produce here is produced by a test against a real server
configured to fail that way (the rig's Dovecot, Courier-IMAP, Cyrus, or a plain socket), or, where
no real server can (provider wording, TLS interception), by a scripted server speaking real IMAP.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from rich.console import Console

from imapscope.imap import (
    Bye,
    ContinuationRequest,
    Greeting,
    Response,
    ResponseCode,
    TaggedResponse,
)
from imapscope.probe import CheckOptions, Report, render_human, run_check
from tests.scripted import (
    CAPABILITIES,
    DnsZone,
    ScriptedImap,
    dns_server,
    full_listener,
    no,
    ok,
    raw_listener,
    serve,
    tunnel_proxy,
)
from tests.servers.rig import INSECURE_SOURCE_ADDRESS, RunningServer, TestCA, free_port


def check(**options: object) -> Report:
    options.setdefault("timeout", 5.0)
    return asyncio.run(run_check(CheckOptions(**options)))  # type: ignore[arg-type]


def sent_credentials(report: Report) -> bool:
    """Whether the client sent LOGIN or AUTHENTICATE (capability lines mention both words)."""
    return any(
        line.startswith("C:") and (" LOGIN " in line or " AUTHENTICATE " in line)
        for line in report.transcript
    )


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings if f.severity != "info"]


def login_options(server: RunningServer, test_ca: TestCA, **extra: object) -> dict[str, object]:
    user = next(iter(server.users))
    options: dict[str, object] = {
        "host": "localhost", "port": server.tls_port, "security": "tls", "user": user,
        "password": server.users[user], "ca_file": str(test_ca.ca_file),
    }  # fmt: skip
    options.update(extra)
    return options


# --- healthy servers --------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_healthy_servers_are_ok(any_server: RunningServer, test_ca: TestCA, security: str) -> None:
    port = any_server.tls_port if security == "tls" else any_server.port
    report = check(**login_options(any_server, test_ca, port=port, security=security))
    assert report.status == "ok", (codes(report), report.steps)
    assert codes(report) == []
    assert [s.name for s in report.steps if s.status == "fail"] == []
    passed = {s.name for s in report.steps if s.status == "pass"}
    assert {"dns", "tcp", "greeting", "authenticate", "list", "examine", "logout"} <= passed
    assert report.selected["exists"] == any_server.seeded[next(iter(any_server.users))]
    assert report.recent  # the newest envelopes were read
    assert report.tls is not None
    assert report.tls["version"].startswith("TLSv1")


def test_courier_shared_namespace_is_listed(courier: RunningServer, test_ca: TestCA) -> None:
    report = check(**login_options(courier, test_ca))
    assert {"prefix": "#shared.", "delimiter": "."} in report.namespaces["shared"]
    assert any(m["name"].startswith("#shared.") for m in report.mailboxes)


def test_auto_mode_finds_the_working_combination(dovecot: RunningServer, test_ca: TestCA) -> None:
    # Only the TLS port is given: auto tries implicit TLS on it first, and it works.
    report = check(**login_options(dovecot, test_ca, security="auto"))
    assert report.status == "ok"
    assert report.target.security == "tls"
    assert report.working == [f"tls on port {dovecot.tls_port}"]


def test_auto_mode_shows_each_attempt_and_which_mode_it_was_for(
    dovecot: RunningServer, test_ca: TestCA
) -> None:
    # The plaintext port: implicit TLS is tried on it first and fails; STARTTLS works.
    report = check(**login_options(dovecot, test_ca, port=dovecot.port, security="auto"))
    assert report.status == "ok", codes(report)
    assert report.target.security == "starttls"
    rows = [(s.name, s.status) for s in report.steps[:4]]
    assert rows == [("dns", "pass"), ("tcp", "pass"), ("tls", "skip"), ("tcp", "pass")]
    tcp_for_tls, tried, tcp_for_starttls = report.steps[1:4]
    assert tcp_for_tls.detail.startswith("for tls: ")
    assert tcp_for_starttls.detail.startswith("for starttls: ")
    assert f"No TLS session on port {dovecot.port}" in tried.detail
    assert "Trying the next mode" in tried.detail
    console = Console(record=True, width=200)
    render_human(report, console)
    shown = console.export_text()
    assert f"localhost:{dovecot.port} (starttls)" in shown
    assert "No TLS session" in shown  # the failed attempt is in the human report too


def test_the_password_is_asked_for_once_the_server_is_known(
    dovecot: RunningServer, test_ca: TestCA
) -> None:
    user, password = next(iter(dovecot.users.items()))
    asked: list[str] = []

    def ask(where: str) -> str:
        asked.append(where)
        return password

    options = login_options(dovecot, test_ca, password=None, ask_password=ask)
    report = check(**options)
    assert report.status == "ok", codes(report)
    assert asked == [f"{user} at localhost:{dovecot.tls_port}"]
    assert password not in "\n".join(report.transcript)
    # A domain whose lookup fails: nothing is asked (no password typed for nothing). The
    # nameserver's port is closed: each lookup is refused at once, not timed out.
    report = check(host="alice@example.invalid", user="alice@example.invalid",
                   nameserver=f"127.0.0.1:{free_port()}", timeout=1.0,
                   ask_password=ask)  # fmt: skip
    assert report.status == "critical"
    assert asked == [f"{user} at localhost:{dovecot.tls_port}"]


def test_without_a_user_the_ladder_stops_before_login(
    dovecot: RunningServer, test_ca: TestCA
) -> None:
    report = check(host="localhost", port=dovecot.port, security="starttls",
                   ca_file=str(test_ca.ca_file))  # fmt: skip
    assert report.status == "ok"
    assert [s.status for s in report.steps if s.name == "authenticate"] == ["skip"]


# --- network and service layers ---------------------------------------------------------------


def test_tcp_refused() -> None:
    report = check(host="127.0.0.1", port=free_port(), security="tls")
    assert report.headline is not None
    assert report.headline.code == "TCP_REFUSED"
    assert report.status == "critical"


def test_tcp_timeout() -> None:
    with full_listener() as port:
        report = check(host="127.0.0.1", port=port, security="tls", timeout=1.0)
    assert codes(report) == ["TCP_TIMEOUT"]


def test_tls_spoken_to_a_plaintext_port(dovecot: RunningServer, test_ca: TestCA) -> None:
    report = check(**login_options(dovecot, test_ca, port=dovecot.port, security="tls"))
    assert report.headline is not None
    assert report.headline.code == "TLS_ON_PLAINTEXT_PORT"
    assert f"STARTTLS on port {dovecot.port}" in report.headline.fix
    assert not sent_credentials(report)


def test_plaintext_spoken_to_a_tls_port(dovecot: RunningServer, test_ca: TestCA) -> None:
    report = check(**login_options(dovecot, test_ca, security="starttls"))
    assert report.headline is not None
    assert report.headline.code == "PLAINTEXT_ON_TLS_PORT"
    assert f"SSL/TLS on port {dovecot.tls_port}" in report.headline.fix


@pytest.mark.parametrize(
    "banner",
    [b"220 mail.example.test ESMTP Postfix\r\n", b"+OK POP3 ready\r\n",
     b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n"],
)  # fmt: skip
def test_not_an_imap_service(banner: bytes) -> None:
    with raw_listener(banner) as port:
        report = check(host="127.0.0.1", port=port, security="starttls")
    assert codes(report) == ["NOT_IMAP_SERVICE"]
    assert report.headline is not None
    assert banner.decode().strip().splitlines()[0] in report.headline.evidence[0]


def test_server_silent() -> None:
    with raw_listener(None) as port:
        report = check(host="127.0.0.1", port=port, security="starttls", timeout=1.0)
    assert codes(report) == ["SERVER_SILENT"]


def test_greeting_bye() -> None:
    server = ScriptedImap(greeting=Greeting("BYE", None, "Too many connections, try later"))
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="starttls")
    assert codes(report) == ["GREETING_BYE"]
    assert "Too many connections" in report.findings[0].evidence[0]


def test_tls_protocol_mismatch() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca = trustme.CA()
    ca.issue_cert("localhost").configure_cert(context)
    with warnings.catch_warnings():  # an outdated server is the point of this test
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    server = ScriptedImap(tls=context, implicit_tls=True)
    with serve(server):
        report = check(host="localhost", port=server.port, security="tls")
    assert codes(report) == ["TLS_PROTOCOL_MISMATCH"]


def test_starttls_not_offered() -> None:
    no_starttls = tuple(c for c in CAPABILITIES if c != "STARTTLS")
    server = ScriptedImap(
        greeting=Greeting("OK", ResponseCode("CAPABILITY", no_starttls), "ready"),
        capabilities=no_starttls,
    )
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="starttls",
                       user="u", password="p")  # fmt: skip
    assert codes(report) == ["STARTTLS_NOT_OFFERED"]
    assert not sent_credentials(report)


def test_starttls_refused() -> None:
    server = ScriptedImap(replies={"STARTTLS": lambda tag, c: [no(tag, "TLS not available")]})
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="starttls")
    assert codes(report) == ["STARTTLS_FAILED"]


# --- certificates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "code"),
    [("expired", "CERT_EXPIRED"), ("wrong_host", "CERT_HOSTNAME_MISMATCH"),
     ("self_signed", "CERT_UNTRUSTED")],
)  # fmt: skip
def test_certificate_failures(
    start_dovecot: Callable[..., RunningServer], test_ca: TestCA, variant: str, code: str
) -> None:
    server = start_dovecot(cert=getattr(test_ca, variant)(f"check-{variant}"))
    for security, port in (("tls", server.tls_port), ("starttls", server.port)):
        report = check(**login_options(server, test_ca, port=port, security=security))
        assert codes(report) == [code], (security, report.findings)
        assert report.tls is not None
        assert report.tls["certificate"]["issuer"]  # details shown even though it failed
        assert not sent_credentials(report)


def test_certificate_expiring_soon(
    start_dovecot: Callable[..., RunningServer], test_ca: TestCA
) -> None:
    cert = test_ca.issue("soon", "localhost", not_after=datetime.now(UTC) + timedelta(days=5))
    server = start_dovecot(cert=cert)
    report = check(**login_options(server, test_ca))
    assert codes(report) == ["CERT_EXPIRING_SOON"]
    assert report.status == "warning"


def test_tls_interception(start_dovecot: Callable[..., RunningServer], tmp_path: Path) -> None:
    inspector = trustme.CA(organization_name="Fortinet")
    ca_file = tmp_path / "fortinet.pem"
    inspector.cert_pem.write_to_path(str(ca_file))
    leaf = inspector.issue_cert("localhost", "127.0.0.1")
    key, chain = tmp_path / "leaf.key", tmp_path / "leaf.pem"
    leaf.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    from tests.servers.rig import CertFiles  # noqa: PLC0415

    server = start_dovecot(cert=CertFiles(key=key, chain=chain, combined=chain))
    report = check(host="localhost", port=server.tls_port, security="tls", ca_file=str(ca_file))
    assert codes(report) == ["TLS_INTERCEPTED"]


# --- authentication ---------------------------------------------------------------------------


def test_wrong_password(any_server: RunningServer, test_ca: TestCA) -> None:
    # Courier answers a failed login after a deliberate 5 s delay.
    report = check(**login_options(any_server, test_ca, password="not-the-password", timeout=10.0))
    assert codes(report) == ["AUTH_FAILED"]


def test_plaintext_login_refused(start_dovecot: Callable[..., RunningServer]) -> None:
    server = start_dovecot(disable_plaintext_auth=True)
    report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                   user="alice", password=server.users["alice"],
                   source_address=INSECURE_SOURCE_ADDRESS)  # fmt: skip
    assert codes(report) == ["PLAINTEXT_LOGIN_REFUSED"]


def test_too_many_connections(start_dovecot: Callable[..., RunningServer], test_ca: TestCA) -> None:
    server = start_dovecot(max_userip_connections=1)
    holder = imaplib.IMAP4(server.host, server.port)
    holder.login("alice", server.users["alice"])
    try:
        report = check(**login_options(server, test_ca))
    finally:
        holder.logout()
    assert codes(report) == ["TOO_MANY_CONNECTIONS"]
    assert "mail_max_userip_connections" in " ".join(report.findings[0].evidence)


def test_mailstore_unavailable(
    start_dovecot: Callable[..., RunningServer], test_ca: TestCA
) -> None:
    server = start_dovecot(first_valid_uid=60000)
    report = check(**login_options(server, test_ca))
    assert codes(report) == ["MAILSTORE_UNAVAILABLE"]
    assert "initialization failed" in " ".join(report.findings[0].evidence)


def test_a_login_without_answer_says_so() -> None:
    server = ScriptedImap(delay={"LOGIN": 2.0, "AUTHENTICATE": 2.0})
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p", timeout=0.5)  # fmt: skip
    # The login's deadline passed: named as such, with the fix that fits a login.
    assert codes(report) == ["STEP_DEADLINE_EXCEEDED"]
    assert "did not answer the login" in report.findings[0].summary
    assert "Courier waits 5 s" in report.findings[0].fix


def test_mailbox_not_found(dovecot: RunningServer, test_ca: TestCA) -> None:
    report = check(**login_options(dovecot, test_ca, mailbox="No such folder"))
    assert codes(report) == ["MAILBOX_NOT_FOUND"]


def test_idle_unsupported(start_dovecot: Callable[..., RunningServer], test_ca: TestCA) -> None:
    server = start_dovecot(capability="IMAP4rev1 NAMESPACE ID LITERAL+")
    report = check(**login_options(server, test_ca))
    assert codes(report) == ["IDLE_UNSUPPORTED"]
    assert [s.status for s in report.steps if s.name == "idle"] == ["skip"]


def test_oauth_token_without_an_oauth_mechanism(dovecot: RunningServer, test_ca: TestCA) -> None:
    report = check(**login_options(dovecot, test_ca, password=None, oauth2_token="ya29.token"))
    assert codes(report) == ["AUTH_MECH_UNSUPPORTED"]


GMAIL_APP = "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)"  # noqa: E501
GMAIL_WEB = "[ALERT] Please log in via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)"  # noqa: E501
GMAIL_IMAP_OFF = "[ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your account for IMAP access. (Failure)"  # noqa: E501


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (lambda t: [no(t, GMAIL_APP)], "APP_PASSWORD_REQUIRED"),
        (lambda t: [no(t, GMAIL_WEB)], "WEB_LOGIN_REQUIRED"),
        (lambda t: [no(t, GMAIL_IMAP_OFF)], "IMAP_DISABLED_FOR_ACCOUNT"),
        (lambda t: [no(t, "Basic authentication is disabled."),
                    Bye(None, "Microsoft Exchange Server IMAP4 server signing off.")],
         "BASIC_AUTH_DISABLED"),
        (lambda t: [no(t, "Password expired", ResponseCode("EXPIRED"))],
         "CREDENTIAL_EXPIRED_OR_LOCKED"),
        (lambda t: [no(t, "[ALERT] Too many simultaneous connections. (Failure)")],
         "TOO_MANY_CONNECTIONS"),
        (lambda t: [no(t, "Temporary authentication failure.", ResponseCode("UNAVAILABLE"))],
         "SERVER_TEMPORARY_ERROR"),
        (lambda t: [ok(t, "User is authenticated but not connected.")], "MAILSTORE_UNAVAILABLE"),
    ],
)  # fmt: skip
def test_provider_replies_are_recognised(reply: Callable[[str], list[object]], code: str) -> None:
    server = ScriptedImap(capabilities=("IMAP4rev1", "IDLE"),
                          greeting=Greeting("OK", None, "Gimap ready"),
                          replies={"LOGIN": lambda tag, c: reply(tag)})  # type: ignore[dict-item] # fmt: skip
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="someone@example.test", password="hunter2-secret")  # fmt: skip
    assert codes(report) == [code]


def test_oauth_token_rejected() -> None:
    caps = ("IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR", "IDLE")
    error = '{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
    import base64  # noqa: PLC0415

    server = ScriptedImap(
        capabilities=caps,
        greeting=Greeting("OK", ResponseCode("CAPABILITY", caps), "ready"),
        replies={"AUTHENTICATE": lambda tag, c: [ContinuationRequest(
            base64.b64encode(error.encode()).decode())]},
    )  # fmt: skip
    # After the error challenge the client answers with an empty line; Gmail then says NO.
    server.replies["SASL"] = lambda tag, data: [
        no(tag, "Invalid credentials (Failure)", ResponseCode("AUTHENTICATIONFAILED"))
    ]
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="someone@example.test", oauth2_token="ya29.expired-token")  # fmt: skip
    assert codes(report) == ["OAUTH_TOKEN_REJECTED"]


def test_idle_dropped() -> None:
    server = ScriptedImap(replies={"IDLE": lambda tag, c: None})
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p")  # fmt: skip
    assert codes(report) == ["IDLE_DROPPED"]


def test_mailbox_access_denied_and_over_quota() -> None:
    for text, code in (("Permission denied", "NOPERM"), ("Quota exceeded", "OVERQUOTA")):
        server = ScriptedImap(replies={
            "EXAMINE": lambda tag, c, t=text, k=code: [no(tag, t, ResponseCode(k))]})  # fmt: skip
        with serve(server):
            report = check(host="127.0.0.1", port=server.port, security="plain",
                           allow_plaintext=True, user="u", password="p")  # fmt: skip
        assert codes(report) == [
            {"NOPERM": "MAILBOX_ACCESS_DENIED", "OVERQUOTA": "OVER_QUOTA"}[code]
        ]


def test_duplicate_special_use_roles() -> None:
    from imapscope.imap import ListResponse  # noqa: PLC0415

    def folders(tag: str, command: object) -> list[object]:
        return [
            ListResponse("LIST", ("\\HasNoChildren",), "/", "INBOX", b"INBOX"),
            ListResponse("LIST", ("\\Sent",), "/", "Sent", b"Sent"),
            ListResponse("LIST", ("\\Sent",), "/", "Sent Items", b"Sent Items"),
            ok(tag),
        ]

    server = ScriptedImap(replies={"LIST": folders})  # type: ignore[dict-item]
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p")  # fmt: skip
    assert codes(report) == ["FOLDER_MAPPING_AMBIGUOUS"]
    assert "Sent, Sent Items" in report.findings[0].evidence[0]


def test_slow_server() -> None:
    server = ScriptedImap(delay={"EXAMINE": 5.2})
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p", timeout=8.0)  # fmt: skip
    assert codes(report) == ["SLOW_SERVER"]
    assert report.status == "warning"


# --- DNS --------------------------------------------------------------------------------------


def test_dns_nxdomain_and_failure() -> None:
    zone = DnsZone(nxdomain={"nope.example.test"}, servfail={"broken.example.test"})
    with dns_server(zone):
        server = f"127.0.0.1:{zone.port}"
        assert codes(check(host="nope.example.test", nameserver=server)) == ["DNS_NXDOMAIN"]
        assert codes(check(host="broken.example.test", nameserver=server)) == ["DNS_FAILURE"]


def test_ipv6_path_broken(dovecot: RunningServer, test_ca: TestCA) -> None:
    # AAAA points at ::1, where nothing listens on this port; IPv4 works.
    zone = DnsZone(records={("mail.example.test", "A"): ["127.0.0.1"],
                            ("mail.example.test", "AAAA"): ["::1"]})  # fmt: skip
    with dns_server(zone):
        report = check(host="mail.example.test", port=dovecot.port, security="starttls",
                       nameserver=f"127.0.0.1:{zone.port}", ca_file=str(test_ca.ca_file),
                       insecure=True)  # fmt: skip
    assert "IPV6_PATH_BROKEN" in codes(report)


# --- secrets ----------------------------------------------------------------------------------


def test_no_secret_reaches_any_output(dovecot: RunningServer, test_ca: TestCA) -> None:
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from imapscope.probe import render_human, render_nagios  # noqa: PLC0415

    for password in (dovecot.users["alice"], "wrong-Secret-123"):
        report = check(**login_options(dovecot, test_ca, security="starttls", port=dovecot.port,
                                       password=password))  # fmt: skip
        buffer = io.StringIO()
        render_human(report, Console(file=buffer, width=200), transcript=True)
        outputs = [buffer.getvalue(), json.dumps(report.to_json()), render_nagios(report),
                   "\n".join(report.transcript), repr(report)]  # fmt: skip
        for text in outputs:
            assert password not in text
        assert any("<redacted>" in line for line in report.transcript)


# --- opt-in write tests -----------------------------------------------------------------------


def test_write_tests_pass_and_leave_the_account_as_it_was(
    any_server: RunningServer, test_ca: TestCA
) -> None:
    user = next(iter(any_server.users))

    def folders() -> list[bytes]:
        client = imaplib.IMAP4(any_server.host, any_server.port)
        client.login(user, any_server.users[user])
        _, listed = client.list()
        _, count = client.select("INBOX", readonly=True)
        client.logout()
        return [*sorted(line for line in listed if isinstance(line, bytes)), count[0] or b""]

    before = folders()
    report = check(**login_options(any_server, test_ca, write_tests=True))
    assert report.status == "ok", report.findings
    pushes = report.server["write_tests"]
    assert set(pushes) == {"flag_roundtrip", "append_push"}
    assert all(p["via"] == "IDLE push" and p["latency_ms"] < 5000 for p in pushes.values())
    assert folders() == before


def test_flag_sync_broken() -> None:
    server = ScriptedImap(capabilities=(*CAPABILITIES, "UNSELECT"))
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p", write_tests=True, timeout=1.0)  # fmt: skip
    assert codes(report) == ["FLAG_SYNC_BROKEN"]
    # The ladder ends at the failing step, and the scratch folder is still removed.
    assert [(s.name, s.status) for s in report.steps][-2:] == [
        ("flag_roundtrip", "fail"),
        ("write_cleanup", "pass"),
    ]


def test_a_protocol_error_at_the_scratch_folder_s_select_is_a_finding() -> None:
    """Found by fuzzing the ladder through a proxy that mutates what the server says: the
    scratch folder's SELECT ran outside any step, so a server that broke the protocol there (a
    tagged answer for a command never sent) made ``check`` raise instead of naming it."""

    def select(tag: str, command: object) -> list[Response] | None:
        if getattr(command, "mailbox", "").startswith("imapscope-check-"):
            return [TaggedResponse("zz9", "OK", None, "for a command never sent")]
        return ScriptedImap().default("SELECT", tag)

    server = ScriptedImap(capabilities=(*CAPABILITIES, "UNSELECT"), replies={"SELECT": select})
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p", write_tests=True, timeout=1.0)  # fmt: skip
    assert [(s.name, s.status) for s in report.steps][-1] == ("write_setup", "fail")
    assert report.status == "critical"
    assert len(codes(report)) == 1


def test_idle_push_missing() -> None:
    from imapscope.imap import Exists, FetchResponse  # noqa: PLC0415

    server = ScriptedImap(replies={"NOOP": lambda tag, c: [
        FetchResponse(1, flags=("\\Flagged",)), Exists(2), ok(tag)]})  # fmt: skip
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p", write_tests=True, timeout=1.0)  # fmt: skip
    assert codes(report) == ["IDLE_PUSH_MISSING", "IDLE_PUSH_MISSING"]
    assert report.status == "warning"


# --- proxies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_check_through_a_proxy(dovecot: RunningServer, test_ca: TestCA, scheme: str) -> None:
    with tunnel_proxy() as proxy:
        report = check(**login_options(dovecot, test_ca, security="starttls", port=dovecot.port,
                                       proxy=f"{scheme}://127.0.0.1:{proxy.port}"))  # fmt: skip
    assert report.status == "ok", report.findings
    assert ("127.0.0.1", dovecot.port) in proxy.tunnels
    assert len(proxy.tunnels) >= 2  # the TCP probe and the session both went through it


def test_a_proxy_that_is_not_there() -> None:
    report = check(host="127.0.0.1", port=993, security="tls",
                   proxy=f"socks5://127.0.0.1:{free_port()}")  # fmt: skip
    assert codes(report) == ["TCP_REFUSED"]
    assert "proxy" in report.findings[0].evidence[0]


def test_a_connection_dropped_in_a_step_is_a_finding_not_a_crash() -> None:
    server = ScriptedImap(replies={"LIST": lambda tag, c: None})  # hang up on LIST
    with serve(server):
        report = check(host="127.0.0.1", port=server.port, security="plain", allow_plaintext=True,
                       user="u", password="p")  # fmt: skip
    assert codes(report) == ["SERVER_TEMPORARY_ERROR"]
    assert report.findings[0].step == "list"
    assert "connection failed during the list step" in report.findings[0].summary
