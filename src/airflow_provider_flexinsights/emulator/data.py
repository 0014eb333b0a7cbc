"""Deterministic Flex queue-report CSV, as the raw export serves it.

Each day's rows depend only on (workspace, report, day), so any date range is the concatenation of
its days and tests can compute the exact bytes to expect. Every field is double-quoted and lines
end with CRLF, like GoodData's raw export.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import random
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

HEADER = (
    "Queue",
    "Date",
    "Interval 15 Minutes",
    "Channel",
    "Direction",
    "Offered Contacts",
    "Average Handle Time",
    "Abandons",
    "Service Level",
    "Average Speed of Answer",
    "Volume Handled",
)
QUEUES = ("Sales", "Support", "Billing", "Retention", "Everyone")
CHANNELS = ("voice", "chat", "sms")
DIRECTIONS = ("Inbound", "Outbound")
OPEN_HOUR, CLOSE_HOUR = 8, 20


US_DAYS = "%m/%d/%Y"


@dataclass(frozen=True)
class Shape:
    """A report's CSV: which columns of :data:`HEADER` it holds (``sources``, indexes, in its own
    order), the headers it writes for them, and how it writes days (strftime)."""

    header: tuple[str, ...] = HEADER
    sources: tuple[int, ...] = tuple(range(len(HEADER)))
    day_format: str = US_DAYS


QUEUE_SHAPE = Shape()
_DAY = HEADER.index("Date")


def reshape(block: bytes, shape: Shape) -> bytes:
    """Rows of :data:`HEADER` (``block``) as ``shape`` writes them: its columns, its day format."""
    rows = csv.reader(io.StringIO(block.decode(), newline=""))
    return csv_lines(_reshaped(row, shape) for row in rows)


def _reshaped(row: list[str], shape: Shape) -> list[str]:
    if shape.day_format != US_DAYS:
        row[_DAY] = dt.datetime.strptime(row[_DAY], US_DAYS).strftime(shape.day_format)
    return [row[index] for index in shape.sources]


def csv_lines(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows as GoodData's raw export writes them: every field double-quoted, CRLF line ends."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def header(shape: Shape = QUEUE_SHAPE) -> bytes:
    return csv_lines([shape.header])


@functools.lru_cache(maxsize=512)
def day_rows(workspace_id: str, report_id: str, day: dt.date) -> bytes:
    """All rows of one day: 15-minute intervals in opening hours, per queue and channel."""
    seed = hashlib.sha256(f"{workspace_id}/{report_id}/{day.isoformat()}".encode()).digest()
    rng = random.Random(seed)
    weekday_load = 0.55 if day.weekday() >= 5 else 1.0
    rows = []
    for minute in range(OPEN_HOUR * 60, CLOSE_HOUR * 60, 15):
        interval = f"{minute // 60:02d}:{minute % 60:02d}"
        for queue in QUEUES:
            for channel in CHANNELS:
                if rng.random() > 0.6:
                    continue
                offered = max(1, int(rng.gauss(12, 5) * weekday_load))
                abandons = min(offered, int(rng.expovariate(1.5)))
                handled = offered - abandons
                rows.append(
                    (
                        queue,
                        day.strftime("%m/%d/%Y"),
                        interval,
                        channel,
                        "Inbound" if rng.random() < 0.85 else "Outbound",
                        str(offered),
                        f"{rng.uniform(90, 600):.1f}",
                        str(abandons),
                        f"{rng.uniform(0.6, 1.0):.4f}",
                        f"{rng.uniform(2, 90):.1f}",
                        str(handled),
                    )
                )
    return csv_lines(rows)


def days(date_from: dt.date, date_to: dt.date) -> Iterator[dt.date]:
    day = date_from
    while day <= date_to:
        yield day
        day += dt.timedelta(days=1)


def iter_report(
    workspace_id: str,
    report_id: str,
    date_from: dt.date,
    date_to: dt.date,
    where: Where | None = None,
    *,
    shape: Shape = QUEUE_SHAPE,
) -> Iterator[bytes]:
    """The CSV in blocks: the header, then one block per day (only the rows ``where`` keeps, as
    ``shape`` writes them)."""
    yield header(shape)
    for day in days(date_from, date_to):
        rows = day_rows(workspace_id, report_id, day)
        rows = select_rows(rows, where) if where else rows
        yield rows if shape == QUEUE_SHAPE else reshape(rows, shape)


Where = Mapping[str, Collection[str]]
"""Column name -> the values a row may have there (list filters, as the emulator applies them)."""


def select_rows(block: bytes, where: Where) -> bytes:
    """The lines of ``block`` whose fields in the ``where`` columns hold one of the allowed values."""
    checks = [(HEADER.index(column), frozenset(values)) for column, values in where.items()]
    rows = csv.reader(io.StringIO(block.decode(), newline=""))
    return csv_lines(row for row in rows if all(row[index] in allowed for index, allowed in checks))


BULK_BLOCK_DAYS = 25  # about 1 MB of rows


def iter_bulk_report(
    workspace_id: str, report_id: str, first_day: dt.date, size_bytes: int
) -> Iterator[bytes]:
    """A report of at least ``size_bytes`` for benchmarks: the header, then one prepared block of
    real rows (about 1 MB) repeated, so the emulator serves it at memory speed."""
    block = b"".join(
        day_rows(workspace_id, report_id, first_day + dt.timedelta(days=n)) for n in range(BULK_BLOCK_DAYS)
    )
    yield header()
    for _ in range(max(1, -(-size_bytes // len(block)))):
        yield block


def render_report(
    workspace_id: str,
    report_id: str,
    date_from: str,
    date_to: str,
    where: Where | None = None,
    *,
    shape: Shape = QUEUE_SHAPE,
) -> bytes:
    """The whole CSV the emulator serves for this export (what tests compare downloads against);
    ``shape``: the report's (``Report.layout.shape``), for reports not shaped like the queue report."""
    start, end = dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to)
    return b"".join(iter_report(workspace_id, report_id, start, end, where, shape=shape))
