"""Table columns for a report's CSV: names normalized, types from the report's definition.

Names: the CSV header lowercased into snake_case (``"Offered Contacts"`` -> ``offered_contacts``),
anything but letters and digits becoming ``_``, a leading digit prefixed with ``c_``, and
duplicates numbered (``queue``, ``queue_2``). The mapping is returned to the caller (XCom).

Types, when the report's definition lists exactly the CSV's columns (the raw export writes its
attributes, then its metrics): metrics ``NUMERIC``, the date attribute (the label that
``date.date.mmddyyyy`` resolves to, values ``MM/DD/YYYY``) ``DATE``, other attributes ``TEXT``.
Otherwise (no definition, or a different column count) every column is ``TEXT``: the safe rule,
since any value fits, and a later run with a definition never needs to narrow a column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_flexinsights.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.protocol import GridItem

DATE_FORMAT = "%m/%d/%Y"  # date.date.mmddyyyy, as the raw export writes it


class ColumnType(enum.Enum):
    """The portable SQL type of a column (the same names in PostgreSQL, SQLite and most others)."""

    TEXT = "TEXT"
    NUMERIC = "NUMERIC"
    DATE = "DATE"


@dataclass(frozen=True)
class Column:
    """A CSV column (``source``, as the header names it) and its table column."""

    source: str
    name: str
    type: ColumnType


class MisfitValueError(FlexInsightsInputError):
    """A CSV value does not fit its column's type; the load changed nothing."""

    def __init__(self, column: str, value: str, type_: ColumnType) -> None:
        super().__init__(
            f"Value {value!r} in column {column} does not fit its type {type_.value}; the load was "
            "rolled back and the table is unchanged."
        )


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


def plan_columns(header: Sequence[str], grid: Sequence[GridItem], date_label_uri: str | None) -> list[Column]:
    """The table columns for ``header``, typed by the report's ``grid`` when it matches (see module)."""
    if len(grid) == len(header):
        types = [_type_of(item, date_label_uri) for item in grid]
    else:
        types = [ColumnType.TEXT] * len(header)
    return [Column(s, n, t) for s, n, t in zip(header, column_names(header), types, strict=True)]


def _type_of(item: GridItem, date_label_uri: str | None) -> ColumnType:
    if item.kind == "metric":
        return ColumnType.NUMERIC
    return ColumnType.DATE if item.uri == date_label_uri else ColumnType.TEXT


def sql_value(column: Column, value: str) -> str | None:
    """The value to bind for ``column``: checked, dates as ISO text; an empty field is NULL."""
    if column.type is ColumnType.TEXT:
        return value
    if value == "":
        return None
    try:
        if column.type is ColumnType.DATE:
            return dt.datetime.strptime(value, DATE_FORMAT).date().isoformat()
        number = decimal.Decimal(value)
    except (ValueError, decimal.InvalidOperation):
        raise MisfitValueError(column.name, value, column.type) from None
    if not number.is_finite():
        raise MisfitValueError(column.name, value, column.type)
    return value
