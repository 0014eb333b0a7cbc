"""What the emulator serves: users, workspaces, reports, labels, faults, and what a test can read back.

The API it answers is described in docs/wire.md; docs/emulator.md says how tests and demos use it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_flexinsights.emulator import data

DEMO_EMAIL = "analyst@example.com"
DEMO_PASSWORD = "flex-emulator-password"
DEMO_WORKSPACE = "flexinsightsdemoworkspace0000001"
QUEUE_REPORT = "3035643"
EMPTY_REPORT = "3035644"
AGENT_REPORT = "3035645"
CHANNEL_REPORT = "3035646"
REORDERED_REPORT = "3035647"  # its CSV's columns come in another order than its grid's
ALIAS_REPORT = "3035648"  # its grid renames columns (aliases); ISO days (yyyy-mm-dd)
EU_DATE_REPORT = "3035649"  # European days (dd/mm/yyyy)
BULK_REPORT = "9000001"  # served only when the emulator is given a bulk size (benchmarks)
DATE_IDENTIFIER = "date.date.mmddyyyy"
DEFAULT_DATE_RANGE = ("2024-01-01", "2024-01-07")  # what an export without a date filter covers


# --- report layouts: what a report's definition (grid) says, and what its CSV writes ---------------

DAY_US, DAY_ISO_8601, DAY_EU = "GDC.time.day_us", "GDC.time.day", "GDC.time.day_eu"
DAY_ISO = "GDC.time.day_iso"  # despite its name dd-mm-yyyy, as recorded (docs/wire.md)
DAY_FORMATS = {DAY_US: data.US_DAYS, DAY_ISO_8601: "%Y-%m-%d", DAY_EU: "%d/%m/%Y", DAY_ISO: "%d-%m-%Y"}


@dataclass(frozen=True)
class GridColumn:
    """One column of a report: the queue data's column it shows (a name of ``data.HEADER``), the
    grid's alias for it, and, to model an export whose header differs from what the metadata names,
    the header the CSV writes instead (None: the alias, else the attribute's or metric's title)."""

    source: str
    alias: str = ""
    header: str | None = None

    @property
    def csv_header(self) -> str:
        return self.header if self.header is not None else (self.alias or self.source)


def _grid(*sources: str) -> tuple[GridColumn, ...]:
    return tuple(GridColumn(source) for source in sources)


QUEUE_ATTRIBUTES = ("Queue", "Date", "Interval 15 Minutes", "Channel", "Direction")
QUEUE_METRICS = (
    "Offered Contacts",
    "Average Handle Time",
    "Abandons",
    "Service Level",
    "Average Speed of Answer",
    "Volume Handled",
)


@dataclass(frozen=True)
class Layout:
    """A report's grid and CSV. ``rows`` and ``columns`` hold attribute labels (``metric_group``
    says which of the two also holds the metrics' marker, as GoodData writes it); ``csv_order``
    lists the sources in the CSV's order (None: attributes of rows, of columns, then metrics);
    ``day_label`` is the type of the date label the grid names (values written in its format)."""

    rows: tuple[GridColumn, ...] = _grid(*QUEUE_ATTRIBUTES)
    columns: tuple[GridColumn, ...] = ()
    metrics: tuple[GridColumn, ...] = tuple(GridColumn(m, alias=m) for m in QUEUE_METRICS)
    metric_group: Literal["rows", "columns"] = "columns"
    csv_order: tuple[str, ...] | None = None
    day_label: str = DAY_US

    @property
    def in_csv(self) -> tuple[GridColumn, ...]:
        """The grid's columns in the CSV's order."""
        grid = (*self.rows, *self.columns, *self.metrics)
        if self.csv_order is None:
            return grid
        by_source = {c.source: c for c in grid}
        return tuple(by_source[source] for source in self.csv_order)

    @property
    def shape(self) -> data.Shape:
        """What the CSV holds and writes (:func:`.data.iter_report`)."""
        return data.Shape(
            header=tuple(c.csv_header for c in self.in_csv),
            sources=tuple(data.HEADER.index(c.source) for c in self.in_csv),
            day_format=DAY_FORMATS[self.day_label],
        )


QUEUE_LAYOUT = Layout()  # the raw export's columns as Twilio's docs list them, grid in the same order


@dataclass
class Report:
    title: str
    kind: Literal["queue", "empty", "bulk"] = "queue"
    size_bytes: int = 0  # bulk reports: at least this many bytes, whatever the dates
    updated: str = "2024-01-02 09:00:00"  # last change, as the metadata API writes it
    summary: str = ""
    layout: Layout = QUEUE_LAYOUT
    earlier_layouts: tuple[Layout, ...] = ()  # older definitions, kept before the current one


def default_reports() -> dict[str, Report]:
    return {
        QUEUE_REPORT: Report(
            "Queue performance, 15 minute intervals",
            updated="2024-03-14 16:42:07",
            summary="Offered, handled and abandoned contacts per queue and channel",
        ),
        EMPTY_REPORT: Report(
            "Queue performance, retired queues (no data)", kind="empty", updated="2023-11-30 08:15:00"
        ),
        AGENT_REPORT: Report("Queue performance by agent team", updated="2024-02-20 11:05:33"),
        CHANNEL_REPORT: Report("Queue performance by channel", updated="2024-02-21 10:00:00"),
        REORDERED_REPORT: Report(
            "Daily totals per queue",
            updated="2024-04-02 08:30:00",
            summary="Metrics in the grid's rows, attributes in its columns; the CSV starts with the day",
            layout=Layout(
                rows=(),
                columns=_grid("Queue", "Date", "Channel"),
                metrics=_grid("Abandons", "Volume Handled", "Offered Contacts"),
                metric_group="rows",
                csv_order=("Date", "Channel", "Queue", "Offered Contacts", "Abandons", "Volume Handled"),
            ),
            earlier_layouts=(Layout(),),
        ),
        ALIAS_REPORT: Report(
            "Queue performance, renamed columns",
            updated="2024-04-03 14:00:00",
            layout=Layout(
                rows=(GridColumn("Date", alias="Day"), GridColumn("Queue", alias="Team Queue")),
                metrics=(GridColumn("Offered Contacts", alias="Offered"), GridColumn("Service Level")),
                day_label=DAY_ISO_8601,
            ),
        ),
        EU_DATE_REPORT: Report(
            "Queue performance, European dates",
            updated="2024-04-04 09:15:00",
            layout=Layout(
                rows=_grid("Date", "Queue", "Direction"),
                metrics=_grid("Average Handle Time", "Abandons"),
                day_label=DAY_EU,
            ),
        ),
    }


# --- attribute labels: the values filters select (list constraints, validElements) ---------------

QUEUE_LABEL = "label.conversations.queue"
CHANNEL_LABEL = "label.conversations.channel"
DIRECTION_LABEL = "label.conversations.direction"


@dataclass(frozen=True)
class Label:
    """An attribute label (display form) filters can use: one CSV column and the values it holds."""

    identifier: str
    column: str  # the column of data.HEADER it selects rows by
    object_id: int
    attribute_id: int  # element URIs belong to the attribute, as in GoodData
    titles: tuple[str, ...]

    def uri(self, workspace_id: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{self.object_id}"

    def element_uri(self, workspace_id: str, title: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{self.attribute_id}/elements?id={self.titles.index(title) + 1}"


def default_labels() -> dict[str, Label]:
    labels = (
        Label(QUEUE_LABEL, "Queue", 20011, 20010, data.QUEUES),
        Label(CHANNEL_LABEL, "Channel", 20021, 20020, data.CHANNELS),
        Label(DIRECTION_LABEL, "Direction", 20031, 20030, data.DIRECTIONS),
    )
    return {label.identifier: label for label in labels}


@dataclass
class Workspace:
    reports: dict[str, Report] = field(default_factory=default_reports)
    identifiers: set[str] = field(default_factory=lambda: {DATE_IDENTIFIER, *default_labels()})
    labels: dict[str, Label] = field(default_factory=default_labels)  # usable when in ``identifiers``


FaultKind = Literal["status", "expire_tt", "expire_sst", "delay", "gone", "reset", "truncate", "stall"]
BODY_FAULTS = frozenset({"reset", "truncate", "stall"})


@dataclass
class Fault:
    """Misbehave on requests to ``endpoint``: let ``skip`` of them through, then misbehave ``count`` times.

    ``endpoint`` is login, token, logout, identifiers, execute, export, query (the report list),
    object (object lookups), or "*" for any; ``workspace``
    limits the fault to one workspace. Kinds:

    - ``status``: answer ``status`` (with ``retry_after`` as Retry-After, if set) instead of serving.
    - ``expire_tt``: expire every TT first, as ten minutes would (the request gets the TT challenge).
    - ``expire_sst``: expire every SST and TT first, as two weeks would.
    - ``delay``: hold the first byte back for ``seconds``, then serve.
    - ``gone``: the export expired: 410 now, 404 from then on (export endpoint).
    - ``reset``: send ``after_bytes`` of a CSV body, then reset the connection (counts downloads only).
    - ``truncate``: send ``after_bytes`` of a CSV body, then close cleanly without the final chunk.
    - ``stall``: send ``after_bytes`` of a CSV body, hold the rest back for ``seconds``, then send it
      (a slow download: a client can be caught, or killed, halfway through).
    """

    endpoint: str = "*"
    kind: FaultKind = "status"
    status: int = 503
    count: int = 1
    skip: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    after_bytes: int = 0
    workspace: str | None = None

    def matches(self, endpoint: str, workspace: str | None, kinds: frozenset[str]) -> bool:
        return (
            self.count > 0
            and self.kind in kinds
            and self.endpoint in ("*", endpoint)
            and self.workspace in (None, workspace)
        )


@dataclass
class EmulatorConfig:
    users: dict[str, str] = field(default_factory=lambda: {DEMO_EMAIL: DEMO_PASSWORD})
    workspaces: dict[str, Workspace] = field(default_factory=lambda: {DEMO_WORKSPACE: Workspace()})
    pending_polls: int = 2  # answers 202 this many times before the CSV is ready...
    pending_seconds: float = 0.0  # ...and for at least this long after the export started
    # when set, each export's wait is drawn from this range instead (seeded by the export id)
    pending_seconds_range: tuple[float, float] | None = None
    tt_ttl: float = 600.0
    tt_max_uses: int | None = None  # a TT stops working after this many requests (None: no limit)
    sst_ttl: float = 14 * 24 * 3600.0
    faults: list[Fault] = field(default_factory=list)
    # filters: "today" for floating date ranges (None: the real date, in UTC, the workspace's zone)
    today: dt.date | None = None
    # statuses each validElements lookup answers before its result, in order: (303, 202) is the
    # recorded redirect then a poll on the redirected URI; (303,) a redirect; (202,) a poll
    valid_elements_detour: tuple[int, ...] = ()
    valid_elements_max_page: int = 1000  # the most values one validElements page holds
    # CSV bodies are sent chunked (no Content-Length, as the real service does) in chunks of this
    # many bytes, the last one shorter; the real service's chunk size is not documented
    chunk_bytes: int = 64 << 10


def airflow_connection(url: str, *, password: str = DEMO_PASSWORD, **extra: Any) -> str:
    """The ``flex_insights`` connection for an emulator at ``url``, as ``AIRFLOW_CONN_...`` JSON."""
    document = {
        "conn_type": "flex_insights",
        "host": url,
        "login": DEMO_EMAIL,
        "password": password,
        "extra": {"workspace_id": DEMO_WORKSPACE, **extra},
    }
    return json.dumps(document)


@dataclass
class RequestRecord:
    """One request as the emulator saw it (never with a password or a token)."""

    endpoint: (
        str  # login, token, profile, logout, identifiers, execute (start an export), export (poll/download),
        # query (the report list), object (object lookups)
    )
    method: str
    path: str
    status: int
    user_agent: str
    at: float
    body: Any = None
    # the client's TCP port: which process made the request (tests find the one downloading)
    client_port: int = 0
