"""``imapscope check`` as a user runs it: flags, outputs, exit codes, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imapscope.cli import app
from tests.servers.rig import RunningServer, TestCA

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["check", *args], env=env)
    return result.exit_code, result.output


def base(server: RunningServer, test_ca: TestCA) -> list[str]:
    return ["localhost", "--port", str(server.tls_port), "--security", "tls",
            "--ca-file", str(test_ca.ca_file)]  # fmt: skip


def test_password_on_the_command_line_is_refused(dovecot: RunningServer, test_ca: TestCA) -> None:
    code, output = run(*base(dovecot, test_ca), "--user", "alice", "--password", "hunter2")
    assert code == 3
    assert "--password-env" in output
    assert "hunter2" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alice@"], "not an email address"),
        (["localhost", "--security", "magic"], "--security must be"),
        (["localhost", "--security", "plain"], "--allow-plaintext"),
        (["localhost", "--ca-file", "/no/such/ca.pem"], "does not exist"),
        (["localhost", "--nameserver", "dns.example"], "--nameserver must be"),
        (["localhost", "--proxy", "ftp://proxy:21"], "proxy URL must start with"),
        (["localhost", "--user", "alice", "--password-env", "NOT_SET_ANYWHERE"], "empty or unset"),
        (["localhost", "--user", "alice"], "no password"),
    ],
)
def test_bad_input_says_what_to_do(args: list[str], message: str) -> None:
    code, output = run(*args)
    assert code == 3
    assert message in " ".join(output.split())


def test_json_report(dovecot: RunningServer, test_ca: TestCA) -> None:
    code, output = run(*base(dovecot, test_ca), "--user", "alice", "--password-env", "PW",
                       "--json", env={"PW": dovecot.users["alice"]})  # fmt: skip
    assert code == 0, output
    report = json.loads(output)
    assert report["status"] == "ok"
    assert report["target"] == {
        "host": "localhost",
        "port": dovecot.tls_port,
        "security": "tls",
        "user": "alice",
        "address": "127.0.0.1",
    }
    assert {s["name"] for s in report["steps"]} >= {"dns", "tcp", "tls", "authenticate", "logout"}
    assert all(set(s) == {"name", "status", "elapsed_ms", "detail"} for s in report["steps"])
    assert report["timings"]["total"] > 0
    assert "IDLE" in report["server"]["capabilities"]
    assert report["mailboxes"][0]["name"] == "INBOX"
    assert report["namespaces"]["personal"] == [{"prefix": "", "delimiter": "."}]
    assert report["tls"]["certificate"]["names"] == ["localhost", "127.0.0.1", "::1"]
    events = [t["event"] for t in report["trace"]]
    assert events[:3] == ["connect_tcp.complete", "start_tls.complete", "greeting.complete"]
    assert "authenticate.complete" in events
    assert report["trace"][1]["version"].startswith("TLSv1")
    assert dovecot.users["alice"] not in output


def test_nagios_line_and_exit_codes(
    dovecot: RunningServer, test_ca: TestCA, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(dovecot.users["alice"] + "\n")
    code, output = run(*base(dovecot, test_ca), "--user", "alice", "--password-file", str(secret),
                       "--nagios")  # fmt: skip
    assert code == 0
    assert output.startswith("IMAP OK - Every step passed")
    assert " | dns=" in output
    assert "total=" in output
    secret.write_text("wrong")
    code, output = run(*base(dovecot, test_ca), "--user", "alice", "--password-file", str(secret),
                       "--nagios")  # fmt: skip
    assert code == 2
    assert output.startswith("IMAP CRITICAL - AUTH_FAILED:")


def test_human_report_with_transcript(dovecot: RunningServer, test_ca: TestCA) -> None:
    code, output = run(*base(dovecot, test_ca), "--user", "alice", "--password-env", "PW",
                       "--transcript", env={"PW": dovecot.users["alice"]})  # fmt: skip
    assert code == 0
    assert "Every step passed" in output
    assert "transcript (secrets redacted)" in output
    assert "<redacted>" in output
    assert dovecot.users["alice"] not in output


def test_warning_exit_code(start_dovecot: object, test_ca: TestCA) -> None:
    server = start_dovecot(capability="IMAP4rev1 NAMESPACE")  # type: ignore[operator]
    code, output = run(*base(server, test_ca), "--user", "alice", "--password-env", "PW",
                       "--nagios", env={"PW": server.users["alice"]})  # fmt: skip
    assert code == 1
    assert output.startswith("IMAP WARNING - IDLE_UNSUPPORTED")
