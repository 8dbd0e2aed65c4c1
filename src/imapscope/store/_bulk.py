"""Many rows into one table through the driver's ``executemany``, for the hot paths (a first
sync writes 100,000 messages in batches of 2,000).

SQLAlchemy's executemany builds a parameter dictionary per row and runs every column's bind
processor through it: about 20 us of CPU per message row, more than SQLite takes to insert it.
:class:`BulkInsert` compiles the INSERT once per dialect (the statement SQLAlchemy itself would
send, with its casts and placeholders), applies only the processors a column has (JSON encoding,
SQLite's date format) to plain tuples, and hands them to the driver in one call. What reaches
the database is what SQLAlchemy would have sent; only the per-row bookkeeping is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

_Processor = Callable[[Any], Any]
#: The statement, the processors by row index, the order it takes a row's values in (None: as
#: given).
_Compiled = tuple[str, list[tuple[int, _Processor]], list[int] | None]


class BulkInsert:
    """``INSERT INTO table (columns...) VALUES (...)`` for many rows; each row is a tuple of the
    columns' values in ``columns``' order."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
            order = compiled.positiontup
            if order is None or sorted(order) != sorted(self.columns):
                raise TypeError(f"{dialect.name}: not a positional INSERT of {self.columns}")
            processors: list[tuple[int, _Processor]] = []
            for index, name in enumerate(self.columns):
                kind = self.table.c[name].type
                process = kind.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((index, process))
            # The statement's placeholders follow the table's column order.
            positions = [self.columns.index(name) for name in order]
            found = (compiled.string, processors,
                     None if positions == list(range(len(positions))) else positions)  # fmt: skip
            self._compiled[dialect.name] = found
        return found

    async def run(self, conn: AsyncConnection, rows: Iterable[Sequence[Any]]) -> None:
        """Insert ``rows`` in the connection's transaction."""
        sql, processors, positions = self._for(conn.dialect)
        prepared: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row)
            for index, process in processors:
                values[index] = process(values[index])
            prepared.append(
                tuple(values) if positions is None else tuple(values[i] for i in positions)
            )
        if prepared:
            await conn.exec_driver_sql(sql, prepared)
