"""`imapscope serve`, `accounts` and `tokens` as real processes: serve picks up accounts the CLI
adds, the CLI reads what serve records, and no password or token reaches the logs or the
database file."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from imapscope.cli_serve import bind
from imapscope.store import DB_FILE, Store
from tests.conftest import PASSWORD, Sandbox

WRONG = "wrong-cli-password-5150"


def cli(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imapscope", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def start_serve(data_dir: Path, ca_file: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--ca-file", str(ca_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    if "web UI" not in lines[0]:
        proc.kill()
        raise AssertionError(f"serve did not start: {lines[0]}{proc.stdout.read()}")
    return proc, lines


def until(what: str, check: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_with_the_cli_and_no_secret_in_logs(sandbox: Sandbox, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, lines = start_serve(data, sandbox.ca_file)
    api = httpx.Client()
    try:
        assert proc.stdout is not None
        lines += [proc.stdout.readline(), proc.stdout.readline()]
        assert "first token (shown once" in lines[1]
        token = lines[2].strip()
        assert token.startswith("isk_")
        url = lines[0].split("web UI ")[1].split("/ ")[0]
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})

        # The CLI registers an account (verified first); serve starts syncing it by itself.
        env = {"ALICE_PW": PASSWORD}
        added = cli(
            data, "accounts", "add", "alice@example.test", "--host", "localhost", "--port",
            str(sandbox.server.tls_port), "--username", "alice", "--password-env", "ALICE_PW",
            "--ca-file", str(sandbox.ca_file), env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert "added account 1" in added.stdout
        until("idle", lambda: api.get("/api/v1/accounts/1").json()["state"] == "idle")

        # A wrong password is refused with the finding, and nothing is saved...
        env = {"BAD_PW": WRONG}
        args = ["accounts", "add", "bad@example.test", "--host", "localhost", "--port",
                str(sandbox.server.tls_port), "--username", "alice", "--password-env", "BAD_PW",
                "--ca-file", str(sandbox.ca_file)]  # fmt: skip
        refused = cli(data, *args, env=env)
        assert refused.returncode == 1
        assert "AUTH_FAILED" in refused.stderr
        assert "use --force to save anyway" in refused.stderr
        # ... unless forced: then serve records its auth_error, which the CLI shows.
        assert cli(data, *args, "--force", env=env).returncode == 0
        until("auth_error", lambda: api.get("/api/v1/accounts/2").json()["state"] == "auth_error")
        errors = cli(data, "accounts", "errors", "2")
        assert "AUTH_FAILED" in errors.stdout
        listed = json.loads(cli(data, "accounts", "list", "--json").stdout)
        assert [(a["email"], a["state"]) for a in listed] == [
            ("alice@example.test", "idle"), ("bad@example.test", "auth_error"),
        ]  # fmt: skip
        failing = json.loads(
            cli(data, "accounts", "list", "--state", "auth_error", "--json").stdout
        )
        assert [a["email"] for a in failing] == ["bad@example.test"]
        found = json.loads(cli(data, "accounts", "list", "--search", "ALICE", "--json").stdout)
        assert [a["email"] for a in found] == ["alice@example.test"]
        assert "No account matches" in cli(data, "accounts", "list", "--search", "nobody").stdout
        unknown = cli(data, "accounts", "list", "--state", "asleep")
        assert unknown.returncode != 0
        assert "use one of: connecting" in unknown.stderr
        shown = json.loads(cli(data, "accounts", "show", "1").stdout)
        assert shown["status"]["messages"] > 0
        assert "secret" not in shown

        # Tokens: create, list, revoke.
        made = cli(data, "tokens", "create", "ci").stdout.strip()
        assert (
            httpx.get(
                f"{url}/api/v1/accounts", headers={"Authorization": f"Bearer {made}"}
            ).status_code
            == 200
        )
        assert "ci" in cli(data, "tokens", "list").stdout
        assert cli(data, "tokens", "revoke", "2").returncode == 0
        assert (
            httpx.get(
                f"{url}/api/v1/accounts", headers={"Authorization": f"Bearer {made}"}
            ).status_code
            == 401
        )

        # Remove: serve stops syncing it; its data is gone.
        assert cli(data, "accounts", "remove", "2").returncode == 0
        until("removed", lambda: api.get("/api/v1/accounts/2").status_code == 404)
        missing = cli(data, "accounts", "show", "2")
        assert missing.returncode == 1
        assert "no account with id 2" in missing.stderr
        for result in (added, refused, errors):
            assert PASSWORD not in result.stdout + result.stderr
            assert WRONG not in result.stdout + result.stderr
    finally:
        api.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    log = "".join(lines) + out
    assert proc.returncode == 0, log
    assert PASSWORD not in log
    assert WRONG not in log
    assert log.count(token) == 1  # printed once, at first start
    raw = b"".join(p.read_bytes() for p in data.glob(f"{DB_FILE}*"))
    assert PASSWORD.encode() not in raw
    assert WRONG.encode() not in raw
    assert token.encode() not in raw  # only its digest is kept

    # A second start prints no token: there is one already.
    proc, lines = start_serve(data, sandbox.ca_file)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert "token" not in "".join(lines) + out


def test_accounts_add_says_what_is_wrong(tmp_path: Path) -> None:
    bad = cli(tmp_path, "accounts", "add", "no-at-sign", "--host", "x", "--password-env", "NOPE")
    assert bad.returncode == 1
    assert "has no '@'" in bad.stderr
    unset = cli(tmp_path, "accounts", "add", "a@b.c", "--host", "x", "--password-env", "NOPE")
    assert unset.returncode == 1
    assert "NOPE is empty or unset" in unset.stderr
    no_terminal = cli(tmp_path, "accounts", "add", "a@b.c", "--host", "x")
    assert "no password: give --password-env" in no_terminal.stderr


def test_sigterm_stops_serve_within_5_s_whatever_is_running(tmp_path: Path) -> None:
    """A check against a server that trickles, an /events wait and an account whose server
    never finishes a reply are all running: SIGTERM still stops serve within 5 s."""
    from tests.hostile import hostile  # noqa: PLC0415

    data = tmp_path / "data"
    with hostile("trickle_greeting") as slow, hostile("bye_every_command") as stuck:
        added = cli(data, "accounts", "add", "stuck@example.test", "--host", "127.0.0.1",
                    "--port", str(stuck), "--security", "none", "--username", "stuck",
                    "--password-env", "PW", "--no-verify", env={"PW": "pw-12345"})  # fmt: skip
        assert added.returncode == 0, added.stderr
        proc, lines = start_serve(data, Path(__file__))  # any readable file as the CA
        assert proc.stdout is not None
        lines += [proc.stdout.readline(), proc.stdout.readline()]
        url = lines[0].split("web UI ")[1].split("/ ")[0]
        headers = {"Authorization": f"Bearer {lines[2].strip()}"}
        errors: list[BaseException] = []

        def call(method: str, path: str, **kwargs: Any) -> None:
            try:
                httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
            except httpx.HTTPError as exc:  # cut off by the shutdown: expected
                errors.append(exc)

        import threading  # noqa: PLC0415

        threads = [
            threading.Thread(target=call, args=("POST", "/api/v1/check"), kwargs={"json": {
                "host": "127.0.0.1", "port": slow, "security": "none", "timeout": 60}}),
            threading.Thread(target=call, args=("GET", "/api/v1/events?after=999999&wait=60")),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # the check, the wait and the account's sync are all under way
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            said = proc.stdout.read()
            proc.stdout.close()
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(10)
    assert elapsed < 5.0, (elapsed, said)
    assert proc.returncode == 0, said


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_serve_memory_stays_bounded_against_four_huge_literals(tmp_path: Path) -> None:
    """An account whose server answers FETCH with four 200 MiB literals: serve names it
    RESPONSE_TOO_LARGE and its peak RSS grows by less than 100 MB (it reached 3.5 GB before)."""
    from tests.hostile import hostile  # noqa: PLC0415

    data = tmp_path / "data"
    with hostile("huge_literals") as port:
        proc, lines = start_serve(data, Path(__file__))
        try:
            assert proc.stdout is not None
            lines += [proc.stdout.readline(), proc.stdout.readline()]
            url = lines[0].split("web UI ")[1].split("/ ")[0]
            api = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {lines[2].strip()}"}
            )
            time.sleep(0.5)
            baseline = _rss_kib(proc.pid, "VmRSS")
            made = api.post("/api/v1/accounts", params={"verify": False}, json={
                "email": "big@example.test", "host": "127.0.0.1", "port": port,
                "security": "none", "username": "big", "secret": "pw-12345"})  # fmt: skip
            assert made.status_code == 201, made.text
            account = made.json()["id"]
            errors = until("the error entry", lambda: api.get(
                f"/api/v1/accounts/{account}/errors").json(), timeout=30)  # fmt: skip
            peak = _rss_kib(proc.pid, "VmHWM")
            api.close()
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
    assert errors[0]["code"] == "RESPONSE_TOO_LARGE", errors[0]
    assert errors[0]["fix"]
    assert (peak - baseline) < 100 * 1024, f"peak {peak} KiB, baseline {baseline} KiB"
    assert (data / DB_FILE).stat().st_size < 10 * 1024 * 1024


def test_listings_are_never_cut_and_have_json(tmp_path: Path) -> None:
    """Piped (not a terminal), a table is as wide as its values; every listing has --json."""
    data = tmp_path / "data"
    empty = cli(data, "accounts", "list")
    assert f"No accounts in {data}" in " ".join(empty.stdout.split())
    assert "--data-dir" in empty.stdout  # where a demo's accounts are
    host = "a-very-long-server-name-that-a-terminal-table-would-have-cut.example.test"
    added = cli(data, "accounts", "add", "someone.with.a.long.address@example.test", "--host",
                host, "--port", "29993", "--password-env", "PW", "--no-verify",
                env={"PW": "pw-12345", "COLUMNS": "80"})  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = cli(data, "accounts", "list", env={"COLUMNS": "80"})
    assert f"{host}:29993" in listed.stdout
    assert "someone.with.a.long.address@example.test" in listed.stdout
    assert json.loads(cli(data, "accounts", "errors", "1", "--json").stdout) == []
    made = cli(data, "tokens", "create", "a-token-name-longer-than-eighty-columns-" + "x" * 50)
    assert made.returncode == 0
    tokens = json.loads(cli(data, "tokens", "list", "--json").stdout)
    assert [t["name"] for t in tokens] == ["a-token-name-longer-than-eighty-columns-" + "x" * 50]
    assert "x" * 50 in cli(data, "tokens", "list", env={"COLUMNS": "80"}).stdout
    # A retrying account's next attempt is in the store (the worker wrote it): shown by `show`.
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=40)

    async def retrying() -> None:
        store = await Store.open(data)
        await store.set_state(1, "connect_error", next_attempt=due)
        await store.close()

    asyncio.run(retrying())
    shown = json.loads(cli(data, "accounts", "show", "1").stdout)
    assert shown["status"]["state"] == "connect_error"
    assert shown["status"]["next_attempt"] == due.isoformat()


def test_check_takes_security_none_like_the_rest() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "imapscope", "check", "127.0.0.1", "--security", "none"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 3
    assert "--allow-plaintext" in refused.stdout + refused.stderr
    assert "must be auto" not in refused.stdout + refused.stderr


def test_served_connections_send_at_once() -> None:
    """serve's listening socket says it is TCP, so asyncio sets TCP_NODELAY on every accepted
    connection: otherwise Nagle held each response's body (uvicorn writes it apart from the
    headers) until the client's delayed ACK, ~40 ms per request on a kept-alive connection."""

    async def main() -> int:
        accepted: asyncio.Queue[int] = asyncio.Queue()

        async def on_connection(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            await accepted.put(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=bind("127.0.0.1", 0))
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            nodelay = await asyncio.wait_for(accepted.get(), 10)
            writer.close()
            return nodelay

    assert asyncio.run(main()) != 0
