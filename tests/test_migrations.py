"""Migrations that rebuild a table on SQLite keep what must not change (run on SQLite alone:
PostgreSQL alters columns in place; tests/test_store.py checks both schemas against the
models)."""

from __future__ import annotations

from pathlib import Path

from imapscope.store import DB_FILE
from tests.servers.postgres import Postgres

#: Account 1, as the schemas before 0014 hold it.
ONE_ACCOUNT = (
    "INSERT INTO accounts (id, email, name, host, port, security, username, auth, "
    "secret, include_folders, exclude_folders, poll_interval, paused, revision, state, "
    "state_since, created, updated) VALUES (1, 'a@x.test', '', 'h', 993, 'tls', 'a', "
    "'password', x'00', '[]', '[]', 300, 0, 1, 'idle', '2026-12-01', '2026-12-01', "
    "'2026-12-01')"
)


def test_the_events_rebuild_keeps_ids_that_were_handed_out(tmp_path: Path) -> None:
    """Migration 0012 rebuilds the SQLite events table (a column becomes nullable): an id once
    handed out is never handed out again, even when the newest events were deleted before."""
    from alembic import command  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    from imapscope.store._migrate import alembic_config  # noqa: PLC0415

    engine = create_engine(f"sqlite:///{tmp_path / DB_FILE}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0011")
        conn.exec_driver_sql(ONE_ACCOUNT)
        for _ in range(5):
            conn.exec_driver_sql("INSERT INTO events (account_id, at, kind, data) VALUES "
                                 "(1, '2026-12-01', 'message.new', '{}')")  # fmt: skip
        conn.exec_driver_sql("DELETE FROM events WHERE id > 3")
        command.upgrade(alembic_config(conn), "0012")
        conn.exec_driver_sql("INSERT INTO events (account_id, at, kind, data) VALUES "
                             "(NULL, '2026-12-01', 'incident.opened', '{}')")  # fmt: skip
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM events ORDER BY id")]
        ddl = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'events'"
        ).scalar()  # fmt: skip
    engine.dispose()
    assert ids == [1, 2, 3, 6]
    assert "AUTOINCREMENT" in str(ddl)
    assert "ON DELETE CASCADE" in str(ddl)


def test_postgresql_s_integers_become_64_bit_and_keep_their_rows(postgres: Postgres) -> None:
    """Migration 0013 on a PostgreSQL database made by 0012, with rows in it: every integer
    column and id sequence becomes 64-bit, the rows stay, the next id follows the last one,
    and a UIDVALIDITY past 2**31 fits (it did not)."""
    import asyncio  # noqa: PLC0415

    from alembic import command  # noqa: PLC0415
    from sqlalchemy import text  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    from imapscope.store._migrate import alembic_config  # noqa: PLC0415

    url = postgres.create_database("m")

    async def main() -> tuple[list[str], list[int], int]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0012"))
                await conn.execute(text(
                    "INSERT INTO accounts (email, name, host, port, security, username, auth, "
                    "secret, include_folders, exclude_folders, poll_interval, paused, revision, "
                    "state, state_since, created, updated) VALUES ('a@x.test', '', 'h', 993, "
                    "'tls', 'a', 'password', '\\x00', '[]', '[]', 300, false, 1, 'idle', now(), "
                    "now(), now())"))  # fmt: skip
                for _ in range(3):
                    await conn.execute(text("INSERT INTO events (account_id, at, kind, data) "
                                            "VALUES (1, now(), 'message.new', '{}')"))  # fmt: skip
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
                left = await conn.execute(text(
                    "SELECT table_name || '.' || column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND data_type = 'integer' "
                    "AND table_name <> 'alembic_version'"))  # fmt: skip
                narrow = list(left.scalars())
                await conn.execute(text("INSERT INTO events (account_id, at, kind, data) "
                                        "VALUES (1, now(), 'message.new', '{}')"))  # fmt: skip
                ids = list(
                    (await conn.execute(text("SELECT id FROM events ORDER BY id"))).scalars()
                )
                wide = "INSERT INTO folders (account_id, name, uidvalidity, complete) VALUES "
                await conn.execute(text(wide + "(1, 'INBOX', 4294967295, false)"))
                validity = (await conn.execute(text("SELECT uidvalidity FROM folders"))).scalar()
                return narrow, ids, int(validity)
        finally:
            await engine.dispose()

    narrow, ids, validity = asyncio.run(main())
    assert narrow == []
    assert ids == [1, 2, 3, 4]
    assert validity == 2**32 - 1


def test_head_names_the_newest_migration(tmp_path: Path) -> None:
    """Store.open skips Alembic (and its import) when the schema is at ``HEAD``: a migration
    added without moving HEAD would never run. And a store at HEAD is opened without it."""
    import asyncio  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from alembic.script import ScriptDirectory  # noqa: PLC0415

    from imapscope.store import Store  # noqa: PLC0415
    from imapscope.store._migrate import HEAD, alembic_config  # noqa: PLC0415

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD

    async def create() -> None:
        await (await Store.open(tmp_path)).close()

    asyncio.run(create())
    opened = (
        "import asyncio, sys; from pathlib import Path; from imapscope.store import Store\n"
        "async def main():\n"
        f"    await (await Store.open(Path({str(tmp_path)!r}))).close()\n"
        "asyncio.run(main()); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    command = [sys.executable, "-c", opened]
    found = subprocess.run(command, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_folders_synced_before_0014_have_no_message_count(tmp_path: Path) -> None:
    """0014 adds ``folders.messages``: a folder synced before has none (NULL), so its next sync
    reads it whole rather than trusting a STATUS against a count never stored."""
    from alembic import command  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    from imapscope.store._migrate import alembic_config  # noqa: PLC0415

    engine = create_engine(f"sqlite:///{tmp_path / DB_FILE}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0013")
        conn.exec_driver_sql(ONE_ACCOUNT)
        conn.exec_driver_sql(
            "INSERT INTO folders (account_id, name, uidvalidity, uidnext, highestmodseq, "
            "complete) VALUES (1, 'INBOX', 7, 31, 40, 1)"
        )
        command.upgrade(alembic_config(conn), "0014")
        row = conn.exec_driver_sql(
            "SELECT uidvalidity, uidnext, highestmodseq, complete, messages FROM folders"
        ).one()
    engine.dispose()
    assert tuple(row) == (7, 31, 40, 1, None)
