"""Checks on operator inputs and connection fields, run before any request is sent.

Each failure raises :class:`~.exceptions.FlexInsightsInputError` naming the bad value and the fix,
so a typo in a DAG costs no login and no export.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.library.protocol import DEFAULT_BASE_URL, Credentials

WORKSPACE_ID_PATTERN = re.compile(r"[a-z0-9]{32}")
REPORT_ID_PATTERN = re.compile(r"[0-9]+")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


def workspace_id(value: Any, *, source: str = "workspace_id") -> str:
    if not isinstance(value, str) or not WORKSPACE_ID_PATTERN.fullmatch(value):
        raise FlexInsightsInputError(
            f"{source} must be the 32 lowercase letters and digits after /projects/ in the Analytics "
            f"Portal URL, got {value!r}."
        )
    return value


def report_id(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not REPORT_ID_PATTERN.fullmatch(text):
        raise FlexInsightsInputError(
            f"report_id must be the numeric object id at the end of the report's URL (.../obj/3035643), "
            f"got {value!r}."
        )
    return text


def date(value: Any, *, name: str) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str) and DATE_PATTERN.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise FlexInsightsInputError(f"{name} must be a real date written YYYY-MM-DD, got {value!r}.")


@dataclass(frozen=True)
class DayNames:
    """What a caller calls its day inputs, so an error names the parameter the user wrote."""

    date_from: str = "date_from"
    date_to: str = "date_to"
    filters: str = "filters"
    floating_example: str = 'filters=[{"type": "floating", "from": -7, "to": -1}]'

    def missing_days(self) -> FlexInsightsInputError:
        return FlexInsightsInputError(
            f"Give the days: {self.date_from} and {self.date_to} (YYYY-MM-DD, both included), or a date "
            f"filter such as {self.floating_example}."
        )


OPERATOR_DAYS = DayNames()


def date_range(date_from: Any, date_to: Any, names: DayNames = OPERATOR_DAYS) -> tuple[str, str]:
    """Both days, checked, in order: the one place "from after to" is refused."""
    start, end = date(date_from, name=names.date_from), date(date_to, name=names.date_to)
    if start > end:
        raise FlexInsightsInputError(
            f"{names.date_from} ({start}) is after {names.date_to} ({end}); both days are included."
        )
    return start, end


def dates_from_data_interval(start: dt.datetime | None, end: dt.datetime | None) -> tuple[str, str]:
    """Whole days of a data interval: its start's day to the day before its (exclusive) end.

    A zero-length interval, as manual runs and cron timetables give, means the day of its start.
    """
    if start is None or end is None:
        raise FlexInsightsInputError(
            "This run has no data interval to take default dates from; set date_from and date_to "
            "(YYYY-MM-DD, e.g. '{{ macros.ds_add(ds, -1) }}')."
        )
    first = start.date()
    last = first if end <= start else (end - dt.timedelta(days=1)).date()
    return first.isoformat(), max(first, last).isoformat()


@dataclass(frozen=True)
class PartitionDays:
    """The days an Airflow partition key stands for (Airflow 3.2+ partitioned runs have no data
    interval: the key is their only date), and the folder a file of that partition goes to."""

    key: str
    grain: Literal["day", "week", "month"]
    date_from: str
    date_to: str

    @property
    def folder(self) -> str:
        """A Hive-style folder naming the partition: ``date=``, ``week=`` (its Monday) or ``month=``."""
        if self.grain == "month":
            return f"month={self.date_from[:7]}"
        return f"{'date' if self.grain == 'day' else 'week'}={self.date_from}"

    def named_in(self, path: str) -> bool:
        """Whether ``path`` already names this partition (its key, first day, or month)."""
        return any(label in path for label in (self.key, self.date_from, self.folder.partition("=")[2]))

    def path_for(self, destination: str) -> str:
        """``destination`` itself when it names the partition, else with the partition's folder
        before its file name, so the runs of different partitions never overwrite one file."""
        if self.named_in(destination):
            return destination
        head, slash, name = destination.rpartition("/")
        return f"{head}{slash}{self.folder}/{name}"


# What Airflow's partition timetables and mappers write (see docs/partitions.md): a day
# (CronPartitionTimetable at midnight, StartOfDayMapper), an ISO week (StartOfWeekMapper), a month
# (StartOfMonthMapper, or key_format="%Y-%m").
_DAY_KEY = re.compile(r"(?P<day>\d{4}-\d{2}-\d{2})(?P<time>T\d{2}:\d{2}:\d{2})?")
_WEEK_KEY = re.compile(r"(?P<day>\d{4}-\d{2}-\d{2}) \(W(?P<week>\d{2})\)")
_MONTH_KEY = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})")


def partition_days(key: str) -> PartitionDays:
    """The days of a partition key: a day, an ISO week (Monday to Sunday) or a month.

    Anything else (an hour, a region, a composite key) is refused before any request, since an
    export covers whole days and a guess would export the wrong ones.
    """
    shown = key if len(key) <= 80 else f"{key[:77]}..."
    if (match := _DAY_KEY.fullmatch(key)) and match["time"] not in (None, "T00:00:00"):
        raise FlexInsightsInputError(
            f"Partition key {shown!r} is not a whole day (Flex Insights exports whole days): for a daily "
            "CronPartitionTimetable at another hour set key_format='%Y-%m-%d', or set date_from and date_to."
        )
    try:
        if match:
            day = dt.date.fromisoformat(match["day"])
            return PartitionDays(key, "day", day.isoformat(), day.isoformat())
        if match := _WEEK_KEY.fullmatch(key):
            monday = dt.date.fromisoformat(match["day"])
            if monday.isoweekday() == 1 and monday.isocalendar().week == int(match["week"]):
                return PartitionDays(
                    key, "week", monday.isoformat(), (monday + dt.timedelta(days=6)).isoformat()
                )
        if match := _MONTH_KEY.fullmatch(key):
            first = dt.date(int(match["year"]), int(match["month"]), 1)
            last = (first + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
            return PartitionDays(key, "month", first.isoformat(), last.isoformat())
    except ValueError:
        pass  # not a real date: refused below like any other key
    raise FlexInsightsInputError(
        f"Partition key {shown!r} names no day, ISO week or month to export: partition by day "
        "('2024-03-01', or CronPartitionTimetable's '2024-03-01T00:00:00'), week ('2024-03-11 (W11)') "
        "or month ('2024-03'), or set date_from and date_to."
    )


def destination(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FlexInsightsInputError(
            f"destination must be a file path or an object storage URI (file://, s3://, ...), got {value!r}."
        )
    _no_credentials_in(value)  # first: the messages below repeat the value
    if value.endswith("/"):
        raise FlexInsightsInputError(f"destination must name a file, not a folder: {value!r}.")
    return value


# scheme://userinfo@ anywhere in a text; the userinfo runs to the last "@" before the path
_URI_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^\s/?#]*)@")


def uri_secrets(text: str) -> list[tuple[str, str]]:
    """``(scheme, secret)`` of each ``scheme://user:secret@host`` in ``text``. A user alone is no
    secret: it names an Airflow connection (``s3://my_aws_conn@bucket/key``)."""
    return [
        (scheme, userinfo.partition(":")[2])
        for scheme, userinfo in _URI_USERINFO.findall(text)
        if ":" in userinfo
    ]


def _no_credentials_in(destination: str) -> None:
    """Refuse ``scheme://key:secret@bucket/...``, without repeating it: the part before ``@`` names an
    Airflow connection, and a secret there would end up in logs (the operator masks it in the
    rendered fields, see ``BaseFlexInsightsExportOperator.render_template``)."""
    found = uri_secrets(destination)
    if found:
        scheme = found[0][0]
        raise FlexInsightsInputError(
            f"destination has a secret before '@': keep credentials in an Airflow connection and name "
            f"it there instead, as in {scheme}://<conn_id>@<bucket>/<key>."
        )


@dataclass(frozen=True)
class ConnectionSettings:
    """A validated ``flex_insights`` connection."""

    conn_id: str
    base_url: str
    credentials: Credentials
    workspace_id: str | None


def connection_settings(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
    where: str | None = None,
) -> ConnectionSettings:
    """``where`` names the connection in error messages (default: by its id)."""
    where = where or f"The Flex Insights connection {conn_id!r}"
    if not login:
        raise FlexInsightsInputError(f"{where} has no login: set it to the Analytics Portal user's email.")
    if not password:
        raise FlexInsightsInputError(f"{where} has no password: set the Analytics Portal user's password.")
    default_workspace = extra.get("workspace_id") or None
    if default_workspace is not None:
        workspace_id(default_workspace, source=f"The extra workspace_id of {where[0].lower()}{where[1:]}")
    base_url = _base_url(where, host, port, allow_http=_truthy(extra.get("allow_insecure_http")))
    return ConnectionSettings(conn_id, base_url, Credentials(login, password), default_workspace)


def _base_url(where: str, host: str | None, port: int | None, *, allow_http: bool) -> str:
    if not host:
        return DEFAULT_BASE_URL
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url)
    if "@" in parts.netloc:  # first: the messages below repeat the host
        raise FlexInsightsInputError(
            f"{where} has a user name or password in its host (before '@'); remove it: the email and "
            "password belong in the connection's login and password fields."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlexInsightsInputError(f"{where} has host {host!r}: use a URL like {DEFAULT_BASE_URL}.")
    if parts.scheme == "http" and not (allow_http or is_loopback(parts.hostname)):
        raise FlexInsightsInputError(
            f"{where} uses plain http:// to {parts.hostname}, which would send the password unencrypted; "
            'use https://, or set extra "allow_insecure_http": true if you really mean it.'
        )
    netloc = parts.netloc if parts.port or not port else f"{parts.netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


def is_loopback(hostname: str) -> bool:
    """Plain HTTP is allowed to this host without an opt-in (a local emulator or tunnel); the CLI asks too."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "yes"))
