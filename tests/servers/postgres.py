"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` in a temporary
directory, on a free loopback port and a socket in that directory, never the system service.

PostgreSQL refuses to run as root, so the cluster belongs to the ``postgres`` user that Debian's
package creates (scripts/install-system installs it with its service disabled). fsync is off:
the data is thrown away at the end.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.rig import HOST, RigError, chown_tree, free_port, make_directory, require_root

USER = "postgres"
ROLE = "imapscope"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (/usr/lib/postgresql/N/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    if not versions:
        raise RigError("PostgreSQL not found: install the Debian package postgresql (scripts/test)")
    return versions[-1].parent


def _as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", USER, "--", *args], capture_output=True, text=True, check=check,
        timeout=120,
    )  # fmt: skip


@dataclass
class Postgres:
    directory: Path
    port: int
    bin: Path
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{ROLE}@{HOST}:{self.port}/{database}"

    def socket_url(self, url: str) -> str:
        """``url`` (one of :meth:`url`'s) through the cluster's unix socket: reachable from a
        network namespace of the test's own, where the loopback port is not."""
        database = url.rsplit("/", 1)[1]
        return f"postgresql+asyncpg://{ROLE}@/{database}?host={self.directory}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = _as_postgres(str(self.bin / "psql"), "-h", HOST, "-p", str(self.port), "-U", ROLE,
                            "-d", database, "-tAc", sql)  # fmt: skip
        return done.stdout.strip()

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def dump(self, database: str) -> bytes:
        """pg_dump of a database (what an attacker with the database would have)."""
        done = subprocess.run(
            ["runuser", "-u", USER, "--", str(self.bin / "pg_dump"), "-h", HOST, "-p",
             str(self.port), "-U", ROLE, database], capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m",
                     "immediate", "-w", "stop", check=False)  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(parent: Path | None = None) -> Postgres:
    require_root("the PostgreSQL test cluster (it runs as the postgres user)")
    binaries = bin_dir()
    directory = make_directory("postgres", parent)
    chown_tree(directory, USER)
    data = directory / "data"
    _as_postgres(str(binaries / "initdb"), "-D", str(data), "-U", ROLE, "-A", "trust",
                 "--no-sync", "-E", "UTF8", "--locale", "C")  # fmt: skip
    port = free_port()
    options = (
        f"-c listen_addresses={HOST} -p {port} -k {directory} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    started = _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                           str(directory / "log"), "-w", "start", check=False)  # fmt: skip
    if started.returncode != 0:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        raise RigError(f"PostgreSQL did not start: {started.stderr}{log}")
    return Postgres(directory, port, binaries)
