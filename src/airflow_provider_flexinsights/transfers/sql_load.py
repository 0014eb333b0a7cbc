"""Load one CSV stream into a table of any common.sql database, in ONE transaction.

The table is created when missing and gains any column new in the CSV; then, in the same
transaction, the rows being replaced are deleted (the exported days, or all of them) and the CSV
is inserted. Any failure (a broken download, a misfit value, a database error) rolls everything
back, so the table is exactly as before. Memory stays flat: the CSV is never held whole.

- PostgreSQL (psycopg 3 or psycopg2): the bytes go to ``COPY ... FROM STDIN (FORMAT csv)`` as they
  arrive, and PostgreSQL parses and checks them (``DateStyle``'s field order set to that of the
  date columns' format, :data:`.columns.DATE_FORMATS`; quoted empty fields of typed columns read as
  NULL). Date columns of two field orders (``MM/DD`` and ``DD/MM``) cannot share one ``DateStyle``:
  such a load takes the path below.
- Any other database: the stdlib ``csv`` reader over a text wrapper of the chunks, each value
  checked in Python (:func:`.columns.sql_value`), inserted in batches with ``executemany`` and the
  hook's placeholder, on the hook's own connection.

Identifiers are always quoted by the database's own rules (SQLAlchemy's identifier preparer of the
hook's dialect); values only ever travel as bound parameters or COPY data, never as SQL.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_flexinsights.library.columns import (
    ChunkReader,
    Column,
    ColumnType,
    MisfitValueError,
    read_header,
    sql_value,
    with_row,
)
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

Mode = Literal["replace_days", "append", "replace"]
MODES: tuple[Mode, ...] = ("replace_days", "append", "replace")

_READ_BYTES = 1 << 20
_COPY_CONTEXT = re.compile(r"line (?P<line>\d+), column (?P<column>.+?): \"(?P<value>.*)\"", re.DOTALL)


@dataclass(frozen=True)
class LoadResult:
    """What one load did: rows in and out, the columns (CSV name -> table column) and DDL run."""

    rows_inserted: int
    rows_deleted: int
    columns: list[Column]
    created_table: bool = False
    added_columns: list[str] = field(default_factory=list)


class TableLoader:
    """Loads CSV streams into ``schema.table`` through ``hook`` (see the module docstring).

    :param days: for ``replace_days``, the first and last day (ISO) whose rows are replaced.
    """

    def __init__(
        self,
        hook: DbApiHook,
        table: str,
        *,
        schema: str | None = None,
        mode: Mode = "replace_days",
        days: tuple[str, str] | None = None,
        batch_rows: int = 1000,
    ) -> None:
        if mode not in MODES:
            raise FlexInsightsInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if mode == "replace_days" and days is None:
            raise FlexInsightsInputError("mode 'replace_days' needs the exported days (date_from, date_to).")
        self.hook, self.table, self.schema, self.mode, self.days = hook, table, schema, mode, days
        self.batch_rows = batch_rows

    @property
    def qualified_name(self) -> str:
        """``schema.table`` as written in messages and XCom (unquoted)."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def load(self, chunks: Iterator[bytes], plan: Callable[[list[str]], list[Column]]) -> LoadResult:
        """Load one CSV stream whole, or change nothing; ``plan`` types the header's columns."""
        source = ChunkReader(chunks)
        body = io.BufferedReader(source, _READ_BYTES)
        columns = plan(read_header(body))
        engine = self.hook.get_sqlalchemy_engine()
        try:
            existing = self._existing_columns(engine)
        finally:
            engine.dispose()
        quote = engine.dialect.identifier_preparer.quote_identifier
        conn = self.hook.get_conn()
        try:
            self._begin(conn)
            with closing(conn.cursor()) as cursor:
                result = self._load_in_transaction(cursor, body, columns, existing, quote)
            conn.commit()
            return result
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            raise
        finally:
            conn.close()

    # --- steps -----------------------------------------------------------------------------------

    def _load_in_transaction(
        self,
        cursor: Any,
        body: io.BufferedReader[Any],
        columns: list[Column],
        existing: dict[str, str] | None,
        quote: Callable[[str], str],
    ) -> LoadResult:
        table = self._quoted_table(quote)
        created, added = existing is None, []
        if existing is None:
            if not columns:
                return LoadResult(0, 0, columns)  # an empty export and no table: nothing to do
            definitions = ", ".join(f"{quote(c.name)} {c.type.value}" for c in columns)
            cursor.execute(f"CREATE TABLE {table} ({definitions})")
        else:
            for column in columns:
                if column.name.lower() not in existing:
                    cursor.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column.name)} {column.type.value}")
                    added.append(column.name)
        deleted = self._delete(cursor, table, columns, existing, quote)
        inserted = self._insert(cursor, body, table, columns, quote) if columns else 0
        return LoadResult(inserted, deleted, columns, created, added)

    def _delete(
        self,
        cursor: Any,
        table: str,
        columns: list[Column],
        existing: dict[str, str] | None,
        quote: Callable[[str], str],
    ) -> int:
        if self.mode == "append" or existing is None:
            return 0
        if self.mode == "replace":
            cursor.execute(f"DELETE FROM {table}")
            return max(int(cursor.rowcount), 0)
        date_column = self._date_column(columns, existing)
        placeholder = self.hook.placeholder
        assert self.days is not None
        cursor.execute(
            f"DELETE FROM {table} WHERE {quote(date_column)} BETWEEN {placeholder} AND {placeholder}",
            self.days,
        )
        return max(int(cursor.rowcount), 0)

    def _date_column(self, columns: list[Column], existing: dict[str, str]) -> str:
        dates = [c.name for c in columns if c.type is ColumnType.DATE]
        if not dates:
            known = [name for name, type_ in existing.items() if "DATE" in type_.upper()]
            dates = known[:1]
        if not dates:
            raise FlexInsightsInputError(
                f"mode 'replace_days' needs a date column in {self.qualified_name}, and the report "
                "has no date attribute; use mode 'append' or 'replace'."
            )
        return dates[0]

    def _insert(
        self,
        cursor: Any,
        body: io.BufferedReader[Any],
        table: str,
        columns: list[Column],
        quote: Callable[[str], str],
    ) -> int:
        names = ", ".join(quote(c.name) for c in columns)
        date_style = _copy_date_style(columns)
        if self.hook.dialect_name == "postgresql" and date_style is not None:
            return _copy(cursor, body, table, columns, quote, date_style=date_style)
        placeholders = ", ".join([self.hook.placeholder] * len(columns))
        statement = f"INSERT INTO {table} ({names}) VALUES ({placeholders})"
        rows = enumerate(csv.reader(io.TextIOWrapper(body, encoding="utf-8", newline="")), start=1)
        inserted = 0
        while batch := [_row_values(columns, row, n) for n, row in itertools.islice(rows, self.batch_rows)]:
            cursor.executemany(statement, batch)
            inserted += len(batch)
        return inserted

    # --- the database's side ----------------------------------------------------------------------

    def _existing_columns(self, engine: Any) -> dict[str, str] | None:
        """Lowercased column name -> type of the table, or None when it does not exist."""
        from sqlalchemy import inspect

        inspector = inspect(engine)
        if not inspector.has_table(self.table, schema=self.schema):
            return None
        return {
            c["name"].lower(): str(c["type"]) for c in inspector.get_columns(self.table, schema=self.schema)
        }

    def _quoted_table(self, quote: Callable[[str], str]) -> str:
        return f"{quote(self.schema)}.{quote(self.table)}" if self.schema else quote(self.table)

    def _begin(self, conn: Any) -> None:
        """Make every statement, DDL included, part of one transaction."""
        if self.hook.dialect_name == "sqlite":
            conn.isolation_level = None  # the sqlite3 module would commit around DDL on its own
            conn.execute("BEGIN")
        else:
            self.hook.set_autocommit(conn, False)


def _row_values(columns: Sequence[Column], row: list[str], number: int) -> list[str | None]:
    """Row ``number`` (1: the first after the header) as values to bind, each checked."""
    if len(row) != len(columns):
        raise FlexInsightsInputError(
            f"CSV row {number} has {len(row)} fields where the header has {len(columns)}; the load was "
            "rolled back."
        )
    try:
        return [sql_value(column, value) for column, value in zip(columns, row, strict=True)]
    except MisfitValueError as err:
        raise with_row(err, columns, number) from None


def _copy_date_style(columns: Sequence[Column]) -> str | None:
    """The ``DateStyle`` field order that reads every date column (``MDY`` when there is none), or
    None when two columns need two orders. ISO days (``YMD``) are read under any order."""
    orders = {c.date_format.order for c in columns if c.date_format is not None} - {"YMD"}
    if len(orders) > 1:
        return None
    return orders.pop() if orders else "MDY"


def _copy(
    cursor: Any,
    body: io.BufferedReader[Any],
    table: str,
    columns: list[Column],
    quote: Callable[[str], str],
    *,
    date_style: str,
) -> int:
    """PostgreSQL: stream the rest of the CSV into COPY (psycopg 3's ``copy``, psycopg2's ``copy_expert``)."""
    names = ", ".join(quote(c.name) for c in columns)
    typed = [quote(c.name) for c in columns if c.type is not ColumnType.TEXT]
    force_null = f", FORCE_NULL ({', '.join(typed)})" if typed else ""
    statement = f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv{force_null})"
    cursor.execute(f"SET LOCAL DateStyle TO 'ISO, {date_style}'")  # one of three constants
    try:
        if hasattr(cursor, "copy"):
            with cursor.copy(statement) as copy:
                while block := body.read(_READ_BYTES):
                    copy.write(block)
        else:
            cursor.copy_expert(statement, body, size=_READ_BYTES)
    except Exception as err:
        misfit = _misfit_from_copy_error(err, columns)
        if misfit is not None:
            raise misfit from None
        raise
    return max(int(cursor.rowcount), 0)


def _misfit_from_copy_error(err: Exception, columns: list[Column]) -> MisfitValueError | None:
    """PostgreSQL's data errors (SQLSTATE class 22) name the line, column and value in their context;
    COPY's line N is the CSV's data row N (the header was read before COPY, and a quoted line break
    does not start a new COPY line)."""
    sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None) or ""
    context = getattr(getattr(err, "diag", None), "context", None) or ""
    match = _COPY_CONTEXT.search(context)
    if not sqlstate.startswith("22") or match is None:
        return None
    misfit = MisfitValueError(match["column"], match["value"], ColumnType.TEXT)
    return with_row(misfit, columns, int(match["line"]))
