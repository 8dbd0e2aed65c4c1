"""Migrations that rebuild a table on SQLite keep what must not change (run on SQLite alone:
PostgreSQL alters columns in place; tests/test_store.py checks both schemas against the
models)."""

from __future__ import annotations

from pathlib import Path

from imapscope.store import DB_FILE


def test_the_events_rebuild_keeps_ids_that_were_handed_out(tmp_path: Path) -> None:
    """Migration 0012 rebuilds the SQLite events table (a column becomes nullable): an id once
    handed out is never handed out again, even when the newest events were deleted before."""
    from alembic import command  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    from imapscope.store._migrate import alembic_config  # noqa: PLC0415

    engine = create_engine(f"sqlite:///{tmp_path / DB_FILE}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0011")
        conn.exec_driver_sql(
            "INSERT INTO accounts (id, email, name, host, port, security, username, auth, "
            "secret, include_folders, exclude_folders, poll_interval, paused, revision, state, "
            "state_since, created, updated) VALUES (1, 'a@x.test', '', 'h', 993, 'tls', 'a', "
            "'password', x'00', '[]', '[]', 300, 0, 1, 'idle', '2026-12-01', '2026-12-01', "
            "'2026-12-01')"
        )
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
