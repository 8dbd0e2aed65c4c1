"""One statement for many rows through the driver's ``executemany``, for the hot paths (a first
sync writes 100,000 messages in batches of 2,000; connecting 10,000 accounts writes folders,
states and events by the thousand).

SQLAlchemy's executemany builds a parameter dictionary per row and runs every column's bind
processor through it: about 20 us of CPU per message row, more than SQLite takes to insert it.
:class:`Bulk` compiles the statement once per dialect (the statement SQLAlchemy itself would
send, with its casts and placeholders, and without the RETURNING it adds to a single INSERT),
applies only the processors a parameter has (JSON encoding, SQLite's date format) to plain
tuples, and hands them to the driver in one call. What reaches the database is what SQLAlchemy
would have sent; only the per-row bookkeeping is gone.

On PostgreSQL, an INSERT of at least :data:`COPY_FROM` rows (a first sync's batch) is sent as
``COPY`` instead (asyncpg's ``copy_records_to_table``, the same values through the same type
codecs, in the same transaction): the server inserts 2,000 message rows in about 17 ms against
32-63 ms for the statement run 2,000 times (a one-off timing on the test cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_Processor = Callable[[Any], Any]
#: Rows from which a PostgreSQL INSERT goes as COPY (fewer: the statement, one round trip).
COPY_FROM = 500
#: The statement, the processors by row index, the order it takes a row's values in (None: as
#: given).
_Compiled = tuple[str, list[tuple[int, _Processor]], list[int] | None]


class Bulk:
    """An INSERT, UPDATE or DELETE whose bound parameters are ``names``, run for many rows:
    each row is a tuple of those parameters' values in ``names``' order."""

    def __init__(
        self, statement: ClauseElement, names: Sequence[str],
        copy: tuple[str, Sequence[str]] | None = None,
    ) -> None:  # fmt: skip
        """``copy``: the table and its columns in ``names``' order, for an INSERT that may go
        as COPY on PostgreSQL."""
        self.statement = statement
        self.names = tuple(names)
        self.copy = copy
        self._compiled: dict[str, _Compiled] = {}

    @classmethod
    def insert(cls, table: Table, columns: Sequence[str]) -> Bulk:
        """``INSERT INTO table (columns...)``: a row is the columns' values in that order
        (every column with a default must be among them)."""
        names = [f"b_{name}" for name in columns]  # a column's own name is reserved
        bound: dict[str, Any] = {c: bindparam(b) for c, b in zip(columns, names, strict=True)}
        return cls(insert(table).values(bound), names, copy=(table.name, tuple(columns)))

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect, for_executemany=True)
            assert isinstance(compiled, SQLCompiler)
            order = compiled.positiontup
            if order is None or sorted(order) != sorted(self.names):
                raise TypeError(
                    f"{dialect.name}: the statement binds {order}, not {list(self.names)}"
                )
            processors: list[tuple[int, _Processor]] = []
            for index, name in enumerate(self.names):
                kind = compiled.binds[name].type
                process = kind.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((index, process))
            positions = [self.names.index(name) for name in order]
            found = (compiled.string, processors,
                     None if positions == list(range(len(positions))) else positions)  # fmt: skip
            self._compiled[dialect.name] = found
        return found

    async def run(self, conn: AsyncConnection, rows: Iterable[Sequence[Any]]) -> None:
        """Run the statement for each of ``rows`` in the connection's transaction."""
        sql, processors, positions = self._for(conn.dialect)
        listed = list(rows)
        copy = (self.copy is not None and conn.dialect.name == "postgresql"
                and len(listed) >= COPY_FROM)  # fmt: skip
        prepared: list[tuple[Any, ...]] = []
        for row in listed:
            values: Sequence[Any] = row
            if processors:
                processed = list(row)
                for index, process in processors:
                    processed[index] = process(processed[index])
                values = processed
            prepared.append(
                tuple(values) if positions is None or copy
                else tuple(values[i] for i in positions)
            )  # fmt: skip
        if not prepared:
            return
        if copy:
            assert self.copy is not None
            await _copy(conn, *self.copy, prepared)
        else:
            await conn.exec_driver_sql(sql, prepared)


async def _copy(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """``rows`` into ``table`` by COPY, inside the connection's transaction. SQLAlchemy begins
    it with the first statement: COPY sent first would commit on its own, so a statement comes
    first when none has."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if not raw.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    await raw.copy_records_to_table(table, records=rows, columns=list(columns))
