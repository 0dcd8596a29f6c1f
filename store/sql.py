"""The writer's few statements as plain SQL text, built once per table from :mod:`store.tables`.

The writer runs them on the driver's own connection (sqlite3, asyncpg) rather than through
SQLAlchemy: for a batch of one to a few events, compiling, caching and result handling
cost more CPU than the database itself. Values still go in and out through the column
types' own bind and result processors for the engine's dialect, so a row is stored exactly
as SQLAlchemy would store it, and the queries (which do use SQLAlchemy) read it back alike.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect, Table

Row = dict[str, Any]
_Processor = Callable[[Any], Any] | None

# Bound parameters per IN (...) on SQLite: well below its limit of 32766 (999 before 3.32).
IN_CHUNK = 500


class TableSQL:
    """SELECT by ids, upsert, insert-if-new, and value conversion for one table.

    ``dialect.name`` is ``sqlite`` (``?`` parameters, one row per execution: executemany
    with the sqlite3 module) or ``postgresql`` (``$n`` parameters for asyncpg, one array of
    all rows per column: see ``columns_of``).
    """

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.postgres = dialect.name == "postgresql"
        self.columns = [c.name for c in table.columns]
        self.key = [c.name for c in table.primary_key.columns]
        impls = [c.type.dialect_impl(dialect) for c in table.columns]
        self._dialect = dialect
        self._impls = impls
        self._bind: list[_Processor] = [t.bind_processor(dialect) for t in impls]
        # On PostgreSQL some processors depend on the type the server sends (a float may
        # come as float8 or numeric): set from the first result by ``result_types``.
        self._result: list[_Processor] | None = None if self.postgres else self._result_processors(None)
        self._types = [str(t.compile(dialect=dialect)) for t in impls]
        names = ", ".join(_quote(c) for c in self.columns)
        self._select = f"SELECT {names} FROM {_quote(table.name)} WHERE {_quote(self.key[0])} "
        marks = ", ".join(self._mark(i) for i in range(len(self.columns)))
        conflict = ", ".join(_quote(c) for c in self.key)
        updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in self.columns if c not in self.key)
        if self.postgres:
            # One array per column: any number of rows in one statement (one plan, one
            # round trip; an executemany runs the statement once per row), and RETURNING
            # tells which chunks were new.
            arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(self._types))
            rows = f"SELECT * FROM unnest({arrays})"
        else:
            rows = f"VALUES ({marks})"
        insert = f"INSERT INTO {_quote(table.name)} ({names}) {rows} ON CONFLICT"
        self.upsert = f"{insert} ({conflict}) DO UPDATE SET {updates}"
        self.insert_new = f"{insert} DO NOTHING" + (" RETURNING 1" if self.postgres else "")

    def select_by_ids(self, count: int) -> str:
        """The rows of ``count`` ids (one array parameter on PostgreSQL, locked for update:
        several stores may share one database)."""
        if self.postgres:
            return self._select + f"= ANY($1::{self._types[self.columns.index(self.key[0])]}[]) FOR UPDATE"
        return self._select + "IN (" + ", ".join("?" * count) + ")"

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """A row's values in column order, as the driver takes them."""
        return tuple(
            value if value is None or bind is None else bind(value)
            for value, bind in zip((row[c] for c in self.columns), self._bind, strict=True)
        )

    def columns_of(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """Rows as one list per column (the parameters of ``upsert`` and ``insert_new`` on
        PostgreSQL)."""
        values = [self.params(r) for r in rows]
        return [[v[i] for v in values] for i in range(len(self.columns))]

    @property
    def has_result_types(self) -> bool:
        return self._result is not None

    def result_types(self, codes: Sequence[Any]) -> None:
        """The driver's type code of each column of ``select_by_ids`` (PostgreSQL: OIDs)."""
        self._result = self._result_processors(codes)

    def row(self, values: Sequence[Any]) -> Row:
        """A row read back (a tuple or record in column order) as Python values."""
        if self._result is None:
            raise RuntimeError("result_types() first")
        return {
            name: value if value is None or result is None else result(value)
            for name, value, result in zip(self.columns, values, self._result, strict=True)
        }

    def _result_processors(self, codes: Sequence[Any] | None) -> list[_Processor]:
        codes = codes if codes is not None else [None] * len(self._impls)
        return [t.result_processor(self._dialect, code) for t, code in zip(self._impls, codes, strict=True)]

    def _mark(self, i: int) -> str:
        return f"${i + 1}" if self.postgres else "?"


def _quote(name: str) -> str:
    return f'"{name}"'
