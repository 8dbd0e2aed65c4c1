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
#: The statement, the processors by row index, the order it takes a row's values in (None: as
#: given).
_Compiled = tuple[str, list[tuple[int, _Processor]], list[int] | None]


class Bulk:
    """An INSERT, UPDATE or DELETE whose bound parameters are ``names``, run for many rows:
    each row is a tuple of those parameters' values in ``names``' order."""

    def __init__(self, statement: ClauseElement, names: Sequence[str]) -> None:
        self.statement = statement
        self.names = tuple(names)
        self._compiled: dict[str, _Compiled] = {}

    @classmethod
    def insert(cls, table: Table, columns: Sequence[str]) -> Bulk:
        """``INSERT INTO table (columns...)``: a row is the columns' values in that order
        (every column with a default must be among them)."""
        names = [f"b_{name}" for name in columns]  # a column's own name is reserved
        bound: dict[str, Any] = {c: bindparam(b) for c, b in zip(columns, names, strict=True)}
        return cls(insert(table).values(bound), names)

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
        prepared: list[tuple[Any, ...]] = []
        for row in rows:
            values: Sequence[Any] = row
            if processors:
                processed = list(row)
                for index, process in processors:
                    processed[index] = process(processed[index])
                values = processed
            prepared.append(
                tuple(values) if positions is None else tuple(values[i] for i in positions)
            )
        if prepared:
            await conn.exec_driver_sql(sql, prepared)
