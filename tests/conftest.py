"""Fixtures shared by the whole suite: the test CA and the real IMAP servers of the rig.

Servers are started here, never assumed to be running. A server that cannot start fails the tests
that asked for it with the rig's explanation (no silent skips).
"""

from __future__ import annotations

import contextlib
import imaplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imapscope.sandbox import SandboxServer, build_store, ensure_certificates
from imapscope.store import DB_FILE
from imapscope.store._db import DATABASE_ENV
from imapscope.sync import Backoff, SyncOptions
from tests import imap_driver
from tests.scripted import running
from tests.servers.courier import start_courier
from tests.servers.cyrus import start_cyrus
from tests.servers.dovecot import start_dovecot as _start_dovecot
from tests.servers.postgres import Postgres, start_postgres
from tests.servers.rig import RunningServer, TestCA
from tests.serving import Serving, serving

# pytest's own fixture for testing plugins (tests/test_testing_plugin.py runs ours with it).
pytest_plugins = ["pytester"]

# Seeded INBOX sizes of the session-wide servers (first user).
DOVECOT_MESSAGES = 200
COURIER_MESSAGES = 50
CYRUS_MESSAGES = 20


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def dovecot(test_ca: TestCA) -> Iterator[RunningServer]:
    server = _start_dovecot(test_ca, messages=DOVECOT_MESSAGES)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def courier(test_ca: TestCA) -> Iterator[RunningServer]:
    server = start_courier(test_ca, messages=COURIER_MESSAGES)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cyrus(test_ca: TestCA) -> Iterator[RunningServer]:
    server = start_cyrus(test_ca, messages=CYRUS_MESSAGES)
    yield server
    server.stop()


@pytest.fixture
def start_dovecot(test_ca: TestCA) -> Iterator[Callable[..., RunningServer]]:
    """Start a Dovecot variant for one test: ``start_dovecot(disable_plaintext_auth=True)``."""
    started: list[RunningServer] = []

    def start(**options: Any) -> RunningServer:
        server = _start_dovecot(test_ca, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(params=["dovecot", "courier", "cyrus"])
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each of the three real servers in turn."""
    server: RunningServer = request.getfixturevalue(request.param)
    return server


@pytest.fixture(autouse=True)
def close_drivers() -> Iterator[None]:
    """Close every test driver a test opened, even when the test failed half-way."""
    yield
    while imap_driver.OPEN:
        imap_driver.OPEN.pop().close()


# The sandbox (a real IMAP server on the codec's server role) with user alice and 12 messages;
# it counts the logins it sees, so tests can prove there is no retry storm.
PASSWORD = "alice-sync-pw-0042"


@dataclass
class Sandbox:
    server: SandboxServer
    ca_file: Path
    logins: list[str]
    cert_file: Path  # the server's certificate (PEM)

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """Another client of alice's (imaplib, the plain port), logged out at the end."""
        connection = imaplib.IMAP4("127.0.0.1", self.server.port)
        connection.login("alice", PASSWORD)
        try:
            yield connection
        finally:
            connection.logout()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    certificates = ensure_certificates(tmp_path / "certs")
    store = build_store([("alice", PASSWORD)], demo_messages=12)
    logins: list[str] = []
    authenticate = store.authenticate

    def counting(name: str, password: str) -> Any:  # counts what the server sees
        logins.append(name)
        return authenticate(name, password)

    store.authenticate = counting  # type: ignore[method-assign]
    server = SandboxServer(
        store, port=0, tls_port=0, smtp_port=0, tls_context=certificates.server_context()
    )
    with running(server):
        yield Sandbox(server, certificates.ca_file, logins, certificates.cert_file)


# --- the store's databases: every store, sync and API test runs on SQLite and on PostgreSQL ---


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl in a temporary directory)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Database:
    """The database a test's store uses: ``kind`` is sqlite or postgresql; for PostgreSQL a
    fresh database, named to the store through $IMAPSCOPE_DATABASE_URL (Store.open reads it)."""

    kind: str
    url: str | None
    server: Postgres | None = None

    def dump(self, data_dir: Path) -> bytes:
        """Everything the database holds, as bytes on disk or in a dump."""
        if self.server is None:
            return b"".join(p.read_bytes() for p in data_dir.iterdir()
                            if p.name.startswith(DB_FILE))  # fmt: skip
        assert self.url is not None
        name = self.url.rsplit("/", 1)[1]
        return self.server.dump(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Database:
    if request.param == "sqlite":
        monkeypatch.delenv(DATABASE_ENV, raising=False)
        return Database("sqlite", None)
    server: Postgres = request.getfixturevalue("postgres")
    url = server.create_database()
    monkeypatch.setenv(DATABASE_ENV, url)
    return Database("postgresql", url, server)


@pytest.fixture
def served(sandbox: Sandbox, tmp_path: Path) -> Iterator[Serving]:
    """``serve``'s app and sync service in this process, on a fresh data directory, with the
    sandbox's CA trusted and quick retries."""
    options = SyncOptions(
        ca_file=str(sandbox.ca_file), timeout=5, backoff=Backoff(first=0.05, cap=0.2)
    )
    with serving(tmp_path / "data", options) as s:
        yield s
