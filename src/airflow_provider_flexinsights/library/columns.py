"""Table columns for a report's CSV: names normalized, types from what the report's definition says.

Names: the CSV header lowercased into snake_case (``"Offered Contacts"`` -> ``offered_contacts``),
anything but letters and digits becoming ``_``, a leading digit prefixed with ``c_``, and
duplicates numbered (``queue``, ``queue_2``). The mapping is returned to the caller (XCom).

Types come from the report's definition (:class:`~.protocol.LayoutColumn`), matched to the CSV's
header **by name**: a header is compared with the names the definition gives each column (its
alias, else its attribute's, label's or metric's title), both sides normalized alike
(:func:`match_key`). No recording shows a raw export's header next to its grid, so the column
order is never trusted: a header matched to exactly one column of the definition gets its type
(a metric ``NUMERIC``; an attribute whose label type is a day format ``DATE``, read in that format;
any other attribute ``TEXT``), and every other header is ``TEXT``: the safe rule, since any value
fits, and a later run that types the column never needs to narrow it.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import io
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.library.protocol import LayoutColumn


class ColumnType(enum.Enum):
    """The portable SQL type of a column (the same names in PostgreSQL, SQLite and most others)."""

    TEXT = "TEXT"
    NUMERIC = "NUMERIC"
    DATE = "DATE"


@dataclass(frozen=True)
class DateFormat:
    """How the raw export writes the days of one label type.

    ``strptime``: the format for Python and Arrow. ``order``: PostgreSQL's ``DateStyle`` field
    order that reads it (ISO ``YYYY-MM-DD`` is read whatever the order).
    """

    label_type: str
    strptime: str
    shown: str
    order: Literal["MDY", "DMY", "YMD"]


# The date dimension's day labels and their formats, as GoodData records them: each label object's
# ``content.type`` next to its identifier and title (gooddata-ruby cassettes
# Full_project_implementation/should_be_able_to_lookup_the_attributes_by_regexp_and_return_a_collection.yml
# and GoodData_MandatoryUserFilter/all.yml: ``day_us`` is ``date.mmddyyyy`` "mm/dd/yyyy", ``day``
# ``date.yyyymmdd`` "yyyy-mm-dd", ``day_eu`` ``date.ddmmyyyy`` "dd/mm/yyyy", and ``day_iso``,
# despite its name, ``date.eddmmyyyy`` "dd-mm-yyyy"). Two recorded day labels stay TEXT:
# ``day_us_noleading`` ("m/d/yy": a two-digit year, whose century would be a guess) and
# ``day_us_long`` ("Mon, Jan 1, 2010": English names, no recorded value to check a parse against).
DATE_FORMATS = {
    f.label_type: f
    for f in (
        DateFormat("GDC.time.day_us", "%m/%d/%Y", "MM/DD/YYYY", "MDY"),
        DateFormat("GDC.time.day", "%Y-%m-%d", "YYYY-MM-DD", "YMD"),
        DateFormat("GDC.time.day_eu", "%d/%m/%Y", "DD/MM/YYYY", "DMY"),
        DateFormat("GDC.time.day_iso", "%d-%m-%Y", "DD-MM-YYYY", "DMY"),
    )
}


@dataclass(frozen=True)
class Column:
    """A CSV column (``source``, as the header names it), its table column, and why it has its type."""

    source: str
    name: str
    type: ColumnType
    date_format: DateFormat | None = None  # DATE columns: how the export writes the days
    reason: str = ""  # why this type: "metric", "label type GDC.time.day_eu", "not named by the report"...
    matched: bool = False  # the header named a column of the report's definition


TABLE_UNCHANGED = "the load was rolled back and the table is unchanged"


class MisfitValueError(FlexInsightsInputError):
    """A CSV value does not fit its column's type; the load changed nothing.

    ``row``: the CSV's data row, 1 for the first after the header (None when unknown).
    """

    def __init__(
        self,
        column: str,
        value: str,
        type_: ColumnType,
        *,
        row: int | None = None,
        date_format: DateFormat | None = None,
        outcome: str = TABLE_UNCHANGED,
    ) -> None:
        where = f"column {column}" + (f", row {row}," if row is not None else "")
        shown = f" ({date_format.shown})" if date_format is not None and type_ is ColumnType.DATE else ""
        super().__init__(f"Value {value!r} in {where} does not fit its type {type_.value}{shown}; {outcome}.")
        self.column, self.value, self.row = column, value, row


def snake_case(header: str) -> str:
    """``"Average Speed of Answer"`` -> ``average_speed_of_answer``; never empty."""
    name = re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_") or "column"
    return f"c_{name}" if name[0].isdigit() else name


def column_names(header: Sequence[str]) -> list[str]:
    """Normalized names, numbered where two headers normalize alike (``queue``, ``queue_2``)."""
    names: list[str] = []
    for source in header:
        base = name = snake_case(source)
        number = 1
        while name in names:
            number += 1
            name = f"{base}_{number}"
        names.append(name)
    return names


def match_key(name: str) -> str:
    """What a header and a definition's name are compared by: Unicode compatibility form (NFKC),
    case folded, runs of white space as one space, trimmed (``" Offered\\u00a0contacts"`` and
    ``"Offered Contacts"`` match; ``"Offered_Contacts"`` does not)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def plan_columns(header: Sequence[str], layout: Sequence[LayoutColumn]) -> list[Column]:
    """The table columns for ``header``, typed by name from the report's ``layout`` (see module)."""
    owners: dict[str, set[int]] = {}
    for index, column in enumerate(layout):
        for name in column.names:
            owners.setdefault(match_key(name), set()).add(index)
    keys = [match_key(source) for source in header]
    claims: dict[int, int] = {}  # layout index -> how many headers name it
    for key in keys:
        for index in owners.get(key, ()):
            claims[index] = claims.get(index, 0) + 1
    planned = []
    for source, name, key in zip(header, column_names(header), keys, strict=True):
        matches = owners.get(key, set())
        if len(matches) == 1 and claims[next(iter(matches))] == 1:
            planned.append(_typed(source, name, layout[next(iter(matches))]))
        else:
            planned.append(Column(source, name, ColumnType.TEXT, reason=_unmatched(matches)))
    return planned


def _unmatched(matches: set[int]) -> str:
    if not matches:
        return "not named by the report"
    if len(matches) > 1:
        return "named by several columns of the report"
    return "its column is named by several headers"


def _typed(source: str, name: str, column: LayoutColumn) -> Column:
    if column.kind == "metric":
        return Column(source, name, ColumnType.NUMERIC, reason="metric", matched=True)
    date_format = DATE_FORMATS.get(column.label_type)
    if date_format is not None:
        reason = f"label type {column.label_type}"
        return Column(source, name, ColumnType.DATE, date_format, reason, matched=True)
    reason = f"label type {column.label_type}" if column.label_type else "attribute"
    return Column(source, name, ColumnType.TEXT, reason=reason, matched=True)


def describe_types(columns: Sequence[Column]) -> str:
    """``queue TEXT (attribute), date DATE (label type GDC.time.day_eu, DD/MM/YYYY), ...``: the
    one line a typed load logs."""
    parts = []
    for c in columns:
        shown = f", {c.date_format.shown}" if c.date_format else ""
        parts.append(f"{c.name} {c.type.value} ({c.reason}{shown})")
    return ", ".join(parts)


def sql_value(column: Column, value: str) -> str | None:
    """The value to bind for ``column``: checked, dates as ISO text; an empty field is NULL.

    Raises :class:`MisfitValueError` without a row; the caller knows the row and adds it.
    """
    if column.type is ColumnType.TEXT:
        return value
    if value == "":
        return None
    try:
        if column.type is ColumnType.DATE:
            strptime = (column.date_format or DATE_FORMATS["GDC.time.day_us"]).strptime
            return dt.datetime.strptime(value, strptime).date().isoformat()
        number = decimal.Decimal(value)
    except (ValueError, decimal.InvalidOperation):
        raise MisfitValueError(column.name, value, column.type, date_format=column.date_format) from None
    if not number.is_finite():
        raise MisfitValueError(column.name, value, column.type)
    return value


def with_row(
    err: MisfitValueError, columns: Sequence[Column], row: int, outcome: str = TABLE_UNCHANGED
) -> MisfitValueError:
    """``err`` again, naming the CSV row it happened in."""
    column = next((c for c in columns if c.name == err.column), None)
    type_ = column.type if column else ColumnType.TEXT
    date_format = column.date_format if column else None
    return MisfitValueError(err.column, err.value, type_, row=row, date_format=date_format, outcome=outcome)


# --- the plan a typed writer calls: the report's layout read once, one log line per load ----------

ColumnPlan = Callable[[list[str]], list[Column]]
"""Header -> table columns (what :class:`..transfers.sql_load.TableLoader` and :mod:`.parquet` call)."""


class _Logs(Protocol):
    def info(self, msg: str, /, *args: Any) -> Any: ...
    def warning(self, msg: str, /, *args: Any) -> Any: ...


class ReportColumnPlan:
    """Types a report's CSV header from its layout, which ``read_layout`` reads on the first call
    only (a try's download attempts share it), and logs one line per load saying which column got
    which type and why, or why none was typed.

    :param read_layout: the report's layout (``FlexInsightsClient.report_layout`` of the export's
        own session, so no other login).
    :param what: the report and days, for the log line.
    """

    def __init__(self, read_layout: Callable[[], Sequence[LayoutColumn]], log: _Logs, what: str) -> None:
        self._read_layout = read_layout
        self._layout: Sequence[LayoutColumn] | None = None
        self._log, self._what = log, what

    def __call__(self, header: list[str]) -> list[Column]:
        if not header:
            return []  # an empty export: no columns to type, nothing to read
        if self._layout is None:
            self._layout = tuple(self._read_layout())
        columns = plan_columns(header, self._layout)
        self._tell(header, columns, self._layout)
        return columns

    def _tell(self, header: list[str], columns: list[Column], layout: Sequence[LayoutColumn]) -> None:
        """The load's one line: each column's type and why, or why none was typed."""
        if any(c.matched for c in columns):
            self._log.info("Column types of %s by name: %s.", self._what, describe_types(columns))
            return
        self._log.warning(
            "Column types of %s: no CSV header matches a column of the report's definition "
            "(headers %s; the definition names %s), so every column loads as TEXT.",
            self._what,
            ", ".join(repr(h) for h in header),
            ", ".join("/".join(repr(n) for n in c.names) or "(untitled)" for c in layout) or "nothing",
        )


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (what COPY and ``TextIOWrapper`` read)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def read_header(body: io.BufferedReader[Any]) -> list[str]:
    """The CSV's header fields (none for an empty export); ``body`` is left at the first row."""
    line = body.readline()
    return next(csv.reader([line.decode("utf-8-sig")])) if line.strip() else []
