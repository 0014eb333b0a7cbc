"""CSV chunks in, Parquet bytes out, one row group at a time (optional extra ``parquet``: pyarrow).

The schema is the SQL load's (:mod:`.transfers.columns`): snake_case names, ``TEXT`` as string,
``NUMERIC`` as float64, ``DATE`` as date32. Arrow's streaming CSV reader parses a block at a time;
each block becomes a row group whose bytes are handed on at once, so memory stays at about one
block whatever the export's size, and :func:`.storage.write_atomically` writes the bytes whole or
not at all, exactly as it writes CSV.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_flexinsights.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.transfers.columns import DATE_FORMAT, Column, ColumnType, MisfitValueError
from airflow_provider_flexinsights.transfers.sql_load import ChunkReader, read_header

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


def parquet_chunks(chunks: Iterator[bytes], plan: Callable[[list[str]], list[Column]]) -> Iterator[bytes]:
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
            for batch in reader:
                writer.write_batch(_typed(pa, batch, columns, schema))
                yield out.take()
    yield out.take()


def _typed(pa: Any, batch: Any, columns: list[Column], schema: Any) -> Any:
    """Cast each string column to its type; a value that does not parse fails naming it."""
    import pyarrow.compute as pc

    arrays = []
    for index, column in enumerate(columns):
        strings = batch.column(index)
        if column.type is ColumnType.TEXT:
            arrays.append(strings.fill_null(""))
            continue
        try:
            if column.type is ColumnType.DATE:
                arrays.append(pc.cast(pc.strptime(strings, DATE_FORMAT, "s"), pa.date32()))
            else:
                arrays.append(pc.cast(strings, pa.float64()))
        except pa.ArrowInvalid as err:
            raise MisfitValueError(column.name, _bad_value(err), column.type) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _bad_value(err: Exception) -> str:
    """Arrow says ``Failed to parse string: 'lots' as a scalar of type double``: the value between quotes."""
    text = str(err)
    start = text.find("'")
    end = text.find("'", start + 1)
    return text[start + 1 : end] if 0 <= start < end else text
