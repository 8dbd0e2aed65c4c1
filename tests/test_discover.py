"""Discovery from an email address: autoconfig over HTTP, SRV records, MX and host guesses, all
through a loopback DNS zone (the --nameserver every lookup goes to)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from imapscope.cli import app
from imapscope.probe import CheckOptions, discover, run_check
from imapscope.probe._discover import parse_autoconfig
from tests.scripted import DnsZone, dns_server
from tests.servers.rig import RunningServer, TestCA

AUTOCONFIG_ADDRESS = "127.0.0.77"  # a loopback address of its own, so port 80 is free on it


def autoconfig_xml(port: int) -> bytes:
    return f"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.test">
  <incomingServer type="pop3"><hostname>pop.example.test</hostname><port>995</port>
    <socketType>SSL</socketType></incomingServer>
  <incomingServer type="imap"><hostname>mail.example.test</hostname><port>{port}</port>
    <socketType>SSL</socketType><username>%EMAILLOCALPART%</username></incomingServer>
</emailProvider></clientConfig>""".encode()


@contextmanager
def http_autoconfig(body: bytes) -> Iterator[list[str]]:
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(f"{self.headers['Host']} {self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = http.server.HTTPServer((AUTOCONFIG_ADDRESS, 80), Handler)
    except OSError as exc:
        pytest.fail(
            f"cannot serve autoconfig on {AUTOCONFIG_ADDRESS}:80 ({exc}); tests run as root"
        )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def mail_server(start_dovecot: Callable[..., RunningServer], test_ca: TestCA) -> RunningServer:
    return start_dovecot(cert=test_ca.issue("mail-example", "mail.example.test"))


def test_autoconfig(mail_server: RunningServer) -> None:
    zone = DnsZone(records={("autoconfig.example.test", "A"): [AUTOCONFIG_ADDRESS],
                            ("mail.example.test", "A"): ["127.0.0.1"]})  # fmt: skip
    with dns_server(zone), http_autoconfig(autoconfig_xml(mail_server.tls_port)) as requests:
        found = asyncio.run(discover("alice@example.test", nameserver=f"127.0.0.1:{zone.port}"))
    first = found.candidates[0]
    assert (first.source, first.host, first.port, first.security, first.username) == (
        "autoconfig",
        "mail.example.test",
        mail_server.tls_port,
        "tls",
        "alice",
    )
    assert requests == [
        "autoconfig.example.test /mail/config-v1.1.xml?emailaddress=alice@example.test"
    ]


def test_srv_records_and_a_deliberate_no(mail_server: RunningServer) -> None:
    zone = DnsZone(records={
        ("_imaps._tcp.example.test", "SRV"): [f"0 1 {mail_server.tls_port} mail.example.test."],
        ("_imap._tcp.example.test", "SRV"): ["0 0 0 ."],
        ("mail.example.test", "A"): ["127.0.0.1"],
        ("example.test", "A"): ["127.0.0.1"],
    })  # fmt: skip
    with dns_server(zone):
        found = asyncio.run(discover("alice@example.test", nameserver=f"127.0.0.1:{zone.port}"))
    srv = [c for c in found.candidates if c.source == "srv"]
    assert [(c.host, c.port, c.security) for c in srv] == [
        ("mail.example.test", mail_server.tls_port, "tls")
    ]
    assert ("srv", "_imap._tcp.example.test: not offered (target '.')") in found.tried


def test_mx_and_host_guesses() -> None:
    zone = DnsZone(records={
        ("example.test", "MX"): ["10 mx1.hoster.test."],
        ("imap.hoster.test", "A"): ["127.0.0.1"],
        ("mail.example.test", "A"): ["127.0.0.1"],
    })  # fmt: skip
    with dns_server(zone):
        found = asyncio.run(discover("bob@example.test", nameserver=f"127.0.0.1:{zone.port}"))
    assert [(c.source, c.host) for c in found.candidates] == [
        ("mx-guess", "imap.hoster.test"),
        ("host-guess", "mail.example.test"),
    ]


def test_check_an_email_address_end_to_end(mail_server: RunningServer, test_ca: TestCA) -> None:
    zone = DnsZone(records={
        ("_imaps._tcp.example.test", "SRV"): [f"0 1 {mail_server.tls_port} mail.example.test."],
        ("mail.example.test", "A"): ["127.0.0.1"],
    })  # fmt: skip
    with dns_server(zone):
        options = CheckOptions(
            host="alice@example.test",
            user="alice",
            password=mail_server.users["alice"],
            nameserver=f"127.0.0.1:{zone.port}",
            ca_file=str(test_ca.ca_file),
            timeout=5.0,
        )
        report = asyncio.run(run_check(options))
    assert report.status == "ok", report.findings
    assert report.steps[0].name == "discovery"
    assert report.target.host == "mail.example.test"
    assert report.discovery is not None
    assert report.discovery["candidates"][0]["source"] == "srv"


def test_discovery_none() -> None:
    zone = DnsZone(nxdomain={"nothing.test"})
    with dns_server(zone):
        options = CheckOptions(
            host="nobody@nothing.test", nameserver=f"127.0.0.1:{zone.port}", timeout=2.0
        )
        report = asyncio.run(run_check(options))
    assert [f.code for f in report.findings] == ["DISCOVERY_NONE"]
    assert any("autoconfig" in line for line in report.findings[0].evidence)


def test_a_resolver_that_denies_everything_is_named_not_the_domain() -> None:
    broken = DnsZone()  # NXDOMAIN for every name, the root zone included
    healthy = DnsZone(records={("", "NS"): ["a.root-servers.test."]})  # the root exists
    with dns_server(broken), dns_server(healthy):
        denied = asyncio.run(discover("x@example.test", nameserver=f"127.0.0.1:{broken.port}"))
        missing = asyncio.run(discover("x@example.test", nameserver=f"127.0.0.1:{healthy.port}"))
        report = asyncio.run(run_check(CheckOptions(
            host="x@example.test", nameserver=f"127.0.0.1:{broken.port}", timeout=2.0
        )))  # fmt: skip
        shown = CliRunner().invoke(
            app, ["discover", "x@example.test", "--nameserver", f"127.0.0.1:{broken.port}"]
        )
    assert denied.resolver_problem is not None
    assert "even the root zone" in denied.resolver_problem
    assert "DNS itself is broken" in denied.resolver_problem
    assert missing.candidates == []
    assert missing.resolver_problem is None  # a working resolver: the domain has no mail
    assert report.headline is not None
    assert report.headline.code == "DISCOVERY_NONE"
    assert "DNS itself is broken" in report.headline.fix
    assert "DNS itself is broken" in " ".join(shown.output.split())


def test_discover_command(mail_server: RunningServer) -> None:
    zone = DnsZone(records={
        ("_imaps._tcp.example.test", "SRV"): [f"0 1 {mail_server.tls_port} mail.example.test."],
    })  # fmt: skip
    with dns_server(zone):
        result = CliRunner().invoke(
            app,
            ["discover", "alice@example.test", "--nameserver", f"127.0.0.1:{zone.port}", "--json"],
        )
        none = CliRunner().invoke(
            app, ["discover", "x@nowhere.test", "--nameserver", f"127.0.0.1:{zone.port}"]
        )
    assert result.exit_code == 0
    assert json.loads(result.output)["candidates"][0]["host"] == "mail.example.test"
    assert none.exit_code == 2
    assert "DISCOVERY_NONE" in none.output


def test_autoconfig_parsing_refuses_entities() -> None:
    with pytest.raises(ValueError, match="entities"):
        parse_autoconfig(b'<!DOCTYPE x [<!ENTITY a "b">]><clientConfig/>', None)
    assert parse_autoconfig(autoconfig_xml(993), None)[0].username == "%EMAILLOCALPART%".replace(
        "%EMAILLOCALPART%", "%EMAILLOCALPART%"
    )
