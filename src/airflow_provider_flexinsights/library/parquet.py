"""CSV chunks in, Parquet bytes out, one row group at a time (optional extra ``parquet``: pyarrow).

The schema is the SQL load's (:mod:`.columns`): snake_case names, ``TEXT`` as string,
``NUMERIC`` as float64, ``DATE`` as date32 (each date column read in its label's format). Arrow's
streaming CSV reader parses a block at a time; each block becomes a row group whose bytes are
handed on at once, so memory stays at about one block whatever the export's size, and
:func:`.storage.write_atomically` writes the bytes whole or not at all, exactly as it writes CSV.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_flexinsights.library.columns import (
    DATE_FORMATS,
    ChunkReader,
    Column,
    ColumnPlan,
    ColumnType,
    MisfitValueError,
    read_header,
)
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError

BLOCK_BYTES = 8 << 20  # CSV bytes per row group


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise FlexInsightsInputError(
            'format="parquet" needs pyarrow: pip install "airflow-provider-flexinsights[parquet]".'
        ) from None
    return pyarrow


class _Collector(io.RawIOBase):
    """A write-only file that keeps what was written until :meth:`take`; ``tell`` stays absolute."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        block = bytes(data)
        self._parts.append(block)
        self._position += len(block)
        return len(block)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        taken, self._parts = b"".join(self._parts), []
        return taken


def arrow_type(pa: Any, column: Column) -> Any:
    return {ColumnType.TEXT: pa.string(), ColumnType.NUMERIC: pa.float64(), ColumnType.DATE: pa.date32()}[
        column.type
    ]


NOTHING_WRITTEN = "nothing was written"
_US_DAYS = DATE_FORMATS["GDC.time.day_us"]


def parquet_chunks(chunks: Iterator[bytes], plan: ColumnPlan) -> Iterator[bytes]:
    """The Parquet file of a CSV stream, as byte chunks (one per row group, then the footer)."""
    pa = _pyarrow()
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    body = io.BufferedReader(ChunkReader(chunks), 1 << 20)
    columns = plan(read_header(body))
    schema = pa.schema([pa.field(c.name, arrow_type(pa, c)) for c in columns])
    out = _Collector()
    with pq.ParquetWriter(out, schema) as writer:
        if columns:
            names = [c.name for c in columns]
            reader = pa_csv.open_csv(
                body,
                read_options=pa_csv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(
                    column_types={c.name: pa.string() for c in columns}, strings_can_be_null=True
                ),
            )
            rows_before = 0
            for batch in reader:
                writer.write_batch(_typed(pa, batch, columns, schema, rows_before))
                rows_before += batch.num_rows
                yield out.take()
    yield out.take()


def _typed(pa: Any, batch: Any, columns: list[Column], schema: Any, rows_before: int) -> Any:
    """Cast each string column to its type; a value that does not parse fails naming it and its row."""
    arrays = []
    for index, column in enumerate(columns):
        strings = batch.column(index)
        if column.type is ColumnType.TEXT:
            arrays.append(strings.fill_null(""))
            continue
        convert = functools.partial(_convert, pa, column)
        try:
            arrays.append(convert(strings))
        except pa.ArrowInvalid:
            at = _first_failure(pa, strings, convert)
            raise MisfitValueError(
                column.name,
                strings[at].as_py(),
                column.type,
                row=rows_before + at + 1,
                date_format=column.date_format,
                outcome=NOTHING_WRITTEN,
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _convert(pa: Any, column: Column, strings: Any) -> Any:
    """Strings to the column's type: days in their label's format, numbers as float64."""
    import pyarrow.compute as pc

    if column.type is ColumnType.DATE:
        days = column.date_format or _US_DAYS
        return pc.cast(pc.strptime(strings, days.strptime, "s"), pa.date32())
    return pc.cast(strings, pa.float64())


def _first_failure(pa: Any, strings: Any, convert: Callable[[Any], Any]) -> int:
    """The index of the first value ``convert`` refuses (``strings`` as a whole is refused), by
    halving: Arrow's message names no row, and a block holds about 100,000 of them."""
    low, high = 0, len(strings)  # every value before ``low`` converts; the first failure is before ``high``
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(strings.slice(low, middle - low))
            low = middle
        except pa.ArrowInvalid:
            high = middle
    return low
