"""``imapscope monitors``, ``channels`` and ``maintenance`` as a person types them: each bad
input is an error that says what to fix, and nothing is saved."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imapscope.cli import app
from tests.receivers import smtp_sink

runner = CliRunner()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Ran:
    """``imapscope ARGS --data-dir DATA`` in this process (tests/test_serve_cli.py runs the real
    command line in processes of its own; these are the many calls of one story, ~2 s each as
    processes)."""
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)],
                           env={"COLUMNS": "200", **(env or {})})  # fmt: skip
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_monitors_channels_and_maintenance_from_the_command_line(tmp_path: Path) -> None:
    """On SQLite: the store calls these commands make run on both databases in the API's
    tests (tests/test_monitors.py, tests/test_reports.py)."""
    data = tmp_path / "data"
    with smtp_sink() as sink:
        url = f"mailto://127.0.0.1:{sink.port}?from=alerts@example.com&to=ops@example.com"
        added = cli(data, "channels", "add", "ops mail", "--url-env", "ALERT_URL",
                    env={"ALERT_URL": url})  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert "added channel 1: ops mail (mailto://" in added.stdout
        tested = cli(data, "channels", "test", "1")
        assert tested.returncode == 0, tested.stderr
        (message,) = sink.wait(1)
        assert message["Subject"] == "imapscope test notification (ops mail)"
    # The sink is gone: the test says so, and the log keeps both attempts.
    tested = cli(data, "channels", "test", "1")
    assert tested.returncode == 1
    assert "the test notification did not arrive" in tested.stderr
    log = cli(data, "channels", "log", "1")
    assert "failed" in log.stdout
    assert "sent" in log.stdout

    hook = cli(data, "channels", "add", "hook", "--webhook", "--url", "http://127.0.0.1:9/h")
    assert "signing secret (shown once): whsec_" in hook.stdout

    added = cli(data, "monitors", "add", "imap", "--host", "127.0.0.1", "--port", "1",
                "--security", "tls", "--interval", "60", "--channel", "1",
                "--fail-after", "3")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added monitor 1: imap, every 60 s" in added.stdout
    listed = json.loads(cli(data, "monitors", "list", "--json").stdout)
    assert [(m["id"], m["host"], m["state"], m["channels"], m["rules"]) for m in listed] == [
        (1, "127.0.0.1", "unknown", [1], {"fail_after": 3})
    ]
    trip = ["monitors", "add", "delivery", "--roundtrip", "--account", "1", "--smtp-host",
            "smtp.example.test", "--smtp-user", "probe", "--from", "probe@example.test",
            "--password-env", "PW"]  # fmt: skip
    assert "no account with id 1" in cli(data, *trip, env={"PW": "x"}).stderr  # not saved
    assert cli(data, "accounts", "add", "alice@example.test", "--host", "localhost",
               "--no-verify", "--password-env", "PW", env={"PW": "x"}).returncode == 0  # fmt: skip
    added_trip = cli(data, *trip, env={"PW": "smtp-secret-9"})
    assert "added monitor 2: delivery" in added_trip.stdout, added_trip.stderr
    shown = json.loads(cli(data, "monitors", "show", "2", "--json").stdout)["monitor"]
    assert shown["smtp"] == {  # the defaults filled in: port by security, a 300 s deadline
        "host": "smtp.example.test", "port": 587, "security": "starttls", "user": "probe",
        "from": "probe@example.test", "deadline": 300,
    }  # fmt: skip
    assert shown["has_password"] is True
    assert "smtp-secret-9" not in json.dumps(shown)
    assert cli(data, "monitors", "pause", "1").returncode == 0
    assert json.loads(cli(data, "monitors", "list", "--json").stdout)[0]["state"] == "paused"
    assert json.loads(cli(data, "monitors", "show", "1", "--json").stdout)["runs"] == []
    assert cli(data, "monitors", "resume", "1").returncode == 0

    window = cli(data, "maintenance", "add", "--starts", "2026-12-24T22:00Z", "--ends",
                 "2026-12-25T02:00Z", "--monitor", "1", "--reason", "upgrade")  # fmt: skip
    assert window.returncode == 0, window.stderr
    assert "upgrade" in cli(data, "maintenance", "list").stdout
    report = cli(data, "report", "--format", "csv")
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[1].startswith("1,imap,check,127.0.0.1:1,")
    table = cli(data, "report", "--period", "month")
    assert "imap" in table.stdout
    assert "maintenance windows" in " ".join(table.stdout.split())  # the accounting rule
    pdf = tmp_path / "report.pdf"
    assert cli(data, "report", "--format", "pdf", "-o", str(pdf)).returncode == 0
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert cli(data, "monitors", "remove", "1").returncode == 0
    assert [m["id"] for m in json.loads(cli(data, "monitors", "list", "--json").stdout)] == [2]
    assert "upgrade" not in cli(data, "maintenance", "list").stdout  # it went with its monitor


@pytest.mark.parametrize(
    ("args", "said"),
    [(["monitors", "add", "x", "--host", "localhost", "--interval", "1"],
      "interval 1s is out of range: use 5 seconds"),
     (["monitors", "add", "x"], "give either account_id"),
     (["monitors", "add", "x", "--host", "localhost", "--channel", "7"], "no channel with id 7"),
     (["monitors", "add", "x", "--host", "localhost", "--remind-every", "10"],
      "remind_every = 10: use a whole number 60-"),
     (["channels", "add", "x", "--url", "nosuch://example.com/abc"], "is not one Apprise knows"),
     (["maintenance", "add", "--starts", "2026-12-24T22:00Z", "--ends", "2026-12-24T21:00Z"],
      "before it starts"),
     (["maintenance", "add", "--starts", "Christmas", "--ends", "2026-12-24T21:00Z"],
      "--starts 'Christmas' is not a time"),
     (["monitors", "add", "x", "--roundtrip", "--account", "1", "--from", "p@example.test"],
      "smtp.host is empty"),
     (["report", "--period", "custom", "--since", "2026-12-02T00:00Z"], "needs since and until"),
     (["report", "--format", "docx"], "format 'docx' is unknown")],
)  # fmt: skip
def test_bad_input_is_an_error_that_says_what_to_fix(  # one database: refused before any write
    tmp_path: Path, args: list[str], said: str
) -> None:
    """In this process (the commands' own code, without a new interpreter each time)."""
    data = ["--data-dir", str(tmp_path / "data")]
    answer = runner.invoke(app, [*args, *data])
    assert answer.exit_code == 1
    assert said in " ".join(answer.output.split())
    group = "channels" if args[0] == "channels" else "monitors"
    assert json.loads(runner.invoke(app, [group, "list", "--json", *data]).output) == []
