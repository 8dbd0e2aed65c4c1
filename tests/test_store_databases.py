"""Choosing the database: PostgreSQL by URL or $IMAPSCOPE_DATABASE_URL, and the clear refusals:
a database that cannot be reached, an unknown kind of URL, a schema newer than this imapscope."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from imapscope.store import Store, StoreError
from tests.servers.postgres import Postgres
from tests.servers.rig import free_port


def open_store(data_dir: Path, url: str | None) -> None:
    async def main() -> None:
        store = await Store.open(data_dir, url)
        await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "says"),
    [("postgresql://imapscope:sekrit-pw@127.0.0.1:{port}/x", "cannot open the database"),
     ("mysql://root@127.0.0.1/x", "unsupported database URL")],
)  # fmt: skip
def test_a_database_that_cannot_be_used_is_refused_clearly(
    tmp_path: Path, url: str, says: str
) -> None:
    with pytest.raises(StoreError) as refused:
        open_store(tmp_path / "data", url.format(port=free_port()))
    assert says in str(refused.value)
    assert "sekrit-pw" not in str(refused.value)


def test_a_newer_schema_is_refused_and_left_alone(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.create_database()
    open_store(tmp_path / "data", url)
    name = url.rsplit("/", 1)[1]
    postgres.psql("UPDATE alembic_version SET version_num = '9999'", name)
    with pytest.raises(StoreError, match="newer than this imapscope"):
        open_store(tmp_path / "data", url)
    assert postgres.psql("SELECT version_num FROM alembic_version", name) == "9999"


def test_serve_with_an_unreachable_database_says_so_and_exits(tmp_path: Path) -> None:
    url = f"postgresql://imapscope@127.0.0.1:{free_port()}/nothing"
    done = subprocess.run(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(tmp_path / "data"),
         "--port", "0", "--database", url], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "cannot open the database" in done.stdout + done.stderr
    assert "web UI" not in done.stdout  # it never started serving


def test_the_environment_variable_names_the_database(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.create_database()
    monkeypatch.setenv(
        "IMAPSCOPE_DATABASE_URL", url.replace("postgresql+asyncpg://", "postgresql://")
    )

    async def main() -> str:
        store = await Store.open(tmp_path / "data")
        try:
            return store.dialect
        finally:
            await store.close()

    assert asyncio.run(main()) == "postgresql"
    assert not (tmp_path / "data" / "imapscope.db").exists()


def test_a_worker_with_another_key_is_refused_at_start(postgres: Postgres, tmp_path: Path) -> None:
    """Two workers on one database with different keys (two data directories): the second is
    refused before it serves or writes anything, saying what to share."""
    url = postgres.create_database()
    open_store(tmp_path / "first", url)  # the first worker's key seals the key check
    name = url.rsplit("/", 1)[1]
    before = postgres.psql("SELECT count(*) FROM settings", name)
    done = subprocess.run(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(tmp_path / "second"),
         "--port", "0", "--database", url], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1
    assert "sealed with another key" in said
    assert "every worker needs the same key" in said
    assert "web UI" not in done.stdout
    assert postgres.psql("SELECT count(*) FROM settings", name) == before
    open_store(tmp_path / "first", url)  # the first key still opens it
