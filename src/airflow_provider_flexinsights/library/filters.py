"""Export filters beyond the date range: a small typed model and the parser of the operator's ``filters``.

DAG files give plain dicts (so Jinja can render inside them); :func:`parse_filters` turns them into
frozen dataclasses after rendering and before any request, and reports every mistake at once, one
sentence each. Mapping identifiers and value titles to workspace URIs happens later, in
:mod:`.operations`, because it needs the server.

The dict forms:

- ``{"type": "interval", "from": "2024-03-01", "to": "2024-03-07"}``: absolute days, both inclusive
  (what ``date_from``/``date_to`` give; the default when no date filter is listed).
- ``{"type": "floating", "from": -7, "to": -1}``: days relative to today in the workspace's time
  zone (``0`` is today), both inclusive; the server resolves it when the export runs.
- ``{"identifier": "label.conversations.queue", "in": ["Sales", "Support"]}`` (or ``"not_in"``):
  rows whose value of that label (display form) is, or is not, one of these titles, written
  exactly as reports show them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError

IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
INTEGER_PATTERN = re.compile(r"[+-]?\d+")

_DATE_KEYS = ("type", "from", "to")
_ATTRIBUTE_KEYS = ("identifier", "in", "not_in")
_DATE_TYPES = ("interval", "floating")


@dataclass(frozen=True)
class DateInterval:
    """Absolute days, both inclusive, as ``YYYY-MM-DD``."""

    date_from: str
    date_to: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "interval", "from": self.date_from, "to": self.date_to}

    def describe(self) -> str:
        return f"{self.date_from}..{self.date_to}"


@dataclass(frozen=True)
class FloatingDateRange:
    """Days relative to the workspace's today (``0``), both inclusive: ``-7..-1`` is the previous week.

    It stays relative on the wire: the server resolves it in the workspace's time zone, which the
    client does not know, so the exported days follow the server's clock, not the run's dates.
    """

    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "floating", "from": self.start, "to": self.end}

    def describe(self) -> str:
        return f"days {self.start}..{self.end} relative to today"


@dataclass(frozen=True)
class AttributeFilter:
    """Rows whose value of the label ``identifier`` is one of ``values`` (or none of them, ``exclude``).

    Values are titles as reports show them; :mod:`.operations` maps them to element URIs.
    """

    identifier: str
    values: tuple[str, ...]
    exclude: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "not_in" if self.exclude else "in": list(self.values)}

    def describe(self) -> str:
        return f"{self.identifier} {'not in' if self.exclude else 'in'} {list(self.values)}"


DateFilter = DateInterval | FloatingDateRange
ExportFilter = DateInterval | FloatingDateRange | AttributeFilter


@dataclass(frozen=True)
class ParsedFilters:
    """The operator's ``filters``: at most one date filter, and attribute filters in the given order."""

    date: DateFilter | None = None
    attributes: tuple[AttributeFilter, ...] = ()


def parse_filters(value: Any) -> ParsedFilters:
    """Parse the rendered ``filters`` argument; raise one error listing every mistake, one sentence each."""
    if value is None:
        return ParsedFilters()
    if not isinstance(value, list | tuple):
        raise FlexInsightsInputError(
            f"filters must be a list of dicts like {{'identifier': ..., 'in': [...]}}, got {value!r}."
        )
    mistakes: list[str] = []
    parsed: list[ExportFilter] = []
    for index, item in enumerate(value):
        where = f"filters[{index}]"
        item_mistakes: list[str] = []
        result = _parse_item(where, item, item_mistakes)
        mistakes += item_mistakes
        if result is not None and not item_mistakes:
            parsed.append(result)
    mistakes += _conflicts(parsed)
    if mistakes:
        raise FlexInsightsInputError(" ".join(mistakes))
    dates = [f for f in parsed if not isinstance(f, AttributeFilter)]
    attributes = tuple(f for f in parsed if isinstance(f, AttributeFilter))
    return ParsedFilters(dates[0] if dates else None, attributes)


def choose_date_filter(
    listed: DateFilter | None,
    date_from: Any,
    date_to: Any,
    default: Callable[[], tuple[str, str]],
    names: validation.DayNames = validation.OPERATOR_DAYS,
) -> DateFilter:
    """The one date filter of an export: a date filter listed in ``filters`` replaces the default
    interval, ``date_from``/``date_to`` give an explicit one, ``default`` (the run's data interval)
    applies when neither is given. Giving both a listed date filter and ``date_from``/``date_to``
    is an error, since one would silently lose; so is giving one end only. Errors use ``names``."""
    explicit = date_from is not None or date_to is not None
    if listed is not None and explicit:
        raise FlexInsightsInputError(
            f"{names.filters} has a date filter ({listed.to_dict()['type']}) and {names.date_from}/"
            f"{names.date_to} are set too; give the days one way only."
        )
    if listed is not None:
        return listed
    if not explicit:
        return DateInterval(*default())
    if date_from is None or date_to is None:
        raise names.missing_days()
    return DateInterval(*validation.date_range(date_from, date_to, names))


# --- parsing one item ---------------------------------------------------------------------------


def _parse_item(where: str, item: Any, mistakes: list[str]) -> ExportFilter | None:
    if not isinstance(item, dict):
        mistakes.append(f"{where} must be a dict, got {item!r}.")
        return None
    if "identifier" in item or "in" in item or "not_in" in item:
        return _parse_attribute(where, item, mistakes)
    if "type" in item:
        return _parse_date(where, item, mistakes)
    mistakes.append(
        f"{where} must have 'identifier' with 'in' or 'not_in' (an attribute filter) or 'type' "
        f"(a date filter), got keys {sorted(map(str, item))}."
    )
    return None


def _parse_date(where: str, item: dict[Any, Any], mistakes: list[str]) -> DateFilter | None:
    if not _known_keys(where, item, _DATE_KEYS, "a date filter", mistakes):
        return None  # a misspelt key explains what then looks missing: one sentence, not two
    kind = item.get("type")
    if kind not in _DATE_TYPES:
        mistakes.append(f"{where} has type {kind!r}; a date filter's type is 'interval' or 'floating'.")
        return None
    missing = [key for key in ("from", "to") if key not in item]
    if missing:
        mistakes.append(f"{where} ({kind}) needs {' and '.join(repr(m) for m in missing)}.")
        return None
    if kind == "interval":
        return _interval(where, item["from"], item["to"], mistakes)
    return _floating(where, item["from"], item["to"], mistakes)


def _interval(where: str, start: Any, end: Any, mistakes: list[str]) -> DateInterval | None:
    try:
        date_from = validation.date(start, name=f"{where} 'from'")
        date_to = validation.date(end, name=f"{where} 'to'")
    except FlexInsightsInputError as err:
        mistakes.append(str(err))
        return None
    if date_from > date_to:
        mistakes.append(f"{where} has 'from' ({date_from}) after 'to' ({date_to}); both ends are inclusive.")
        return None
    return DateInterval(date_from, date_to)


def _floating(where: str, start: Any, end: Any, mistakes: list[str]) -> FloatingDateRange | None:
    first, last = _day_offset(where, "from", start, mistakes), _day_offset(where, "to", end, mistakes)
    if first is None or last is None:
        return None
    if first > last:
        mistakes.append(
            f"{where} has 'from' ({first}) after 'to' ({last}); a floating range counts days from today "
            "(-7 is a week ago), both ends inclusive."
        )
        return None
    return FloatingDateRange(first, last)


def _day_offset(where: str, key: str, value: Any, mistakes: list[str]) -> int | None:
    """Whole days relative to today; numeric text is accepted, since Jinja renders to text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INTEGER_PATTERN.fullmatch(value.strip()):
        return int(value)
    mistakes.append(
        f"{where} '{key}' must be a whole number of days relative to today (e.g. -7), got {value!r}."
    )
    return None


def _parse_attribute(where: str, item: dict[Any, Any], mistakes: list[str]) -> AttributeFilter | None:
    if not _known_keys(where, item, _ATTRIBUTE_KEYS, "an attribute filter", mistakes):
        return None  # a misspelt key explains what then looks missing: one sentence, not two
    identifier = item.get("identifier")
    if not isinstance(identifier, str) or not IDENTIFIER_PATTERN.fullmatch(identifier):
        mistakes.append(
            f"{where} needs 'identifier': a label's identifier like 'label.conversations.queue', "
            f"got {identifier!r}."
        )
        identifier = None
    if "in" in item and "not_in" in item:
        mistakes.append(f"{where} has both 'in' and 'not_in'; use one per filter.")
        return None
    if "in" not in item and "not_in" not in item:
        mistakes.append(f"{where} needs 'in' or 'not_in': the list of values to keep or to leave out.")
        return None
    key = "in" if "in" in item else "not_in"
    values = _values(where, key, item[key], mistakes)
    if identifier is None or values is None:
        return None
    return AttributeFilter(identifier, values, exclude=key == "not_in")


def _values(where: str, key: str, value: Any, mistakes: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list | tuple):
        mistakes.append(f"{where} '{key}' must be a list of values as reports show them, got {value!r}.")
        return None
    if not value:
        mistakes.append(f"{where} '{key}' is empty; list at least one value.")
        return None
    wrong = [v for v in value if not isinstance(v, str)]
    if wrong:
        mistakes.append(f"{where} '{key}' must hold text values as reports show them, got {wrong[0]!r}.")
        return None
    return tuple(dict.fromkeys(value))  # duplicates dropped, order kept


def _known_keys(
    where: str, item: dict[Any, Any], allowed: tuple[str, ...], kind: str, mistakes: list[str]
) -> bool:
    """True when every key of ``item`` is one ``kind`` takes; else one mistake per unknown key."""
    unknown = [key for key in item if key not in allowed]
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        mistakes.append(f"{where} has unknown key {key!r}{hint}; {kind} takes {', '.join(allowed)}.")
    return not unknown


def _conflicts(parsed: list[ExportFilter]) -> list[str]:
    mistakes: list[str] = []
    dates = [f for f in parsed if not isinstance(f, AttributeFilter)]
    if len(dates) > 1:
        mistakes.append(f"filters has {len(dates)} date filters; give at most one (interval or floating).")
    seen: set[str] = set()
    for attribute in (f for f in parsed if isinstance(f, AttributeFilter)):
        if attribute.identifier in seen:
            mistakes.append(
                f"filters has {attribute.identifier} more than once; merge its values into one filter."
            )
        seen.add(attribute.identifier)
    return mistakes
