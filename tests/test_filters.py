"""Filters beyond the date range: the parser (no server), then real exports through the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_flexinsights.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.filters import (
    AttributeFilter,
    DateInterval,
    FloatingDateRange,
    ParsedFilters,
    choose_date_filter,
    parse_filters,
)

QUEUE = "label.conversations.queue"

# --- the parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ParsedFilters()),
        ([], ParsedFilters()),
        (
            [{"type": "floating", "from": -7, "to": -1}],
            ParsedFilters(FloatingDateRange(-7, -1)),
        ),
        (
            [{"type": "floating", "from": "-7", "to": " 0"}],  # Jinja renders numbers as text
            ParsedFilters(FloatingDateRange(-7, 0)),
        ),
        (
            [{"type": "interval", "from": "2024-03-01", "to": "2024-03-07"}],
            ParsedFilters(DateInterval("2024-03-01", "2024-03-07")),
        ),
        (
            [{"identifier": QUEUE, "in": ["Sales", "Support", "Sales"]}],
            ParsedFilters(attributes=(AttributeFilter(QUEUE, ("Sales", "Support")),)),
        ),
        (
            [
                {"identifier": QUEUE, "not_in": ["Everyone"]},
                {"type": "floating", "from": -1, "to": -1},
                {"identifier": "label.conversations.channel", "in": ["voice"]},
            ],
            ParsedFilters(
                FloatingDateRange(-1, -1),
                (
                    AttributeFilter(QUEUE, ("Everyone",), exclude=True),
                    AttributeFilter("label.conversations.channel", ("voice",)),
                ),
            ),
        ),
    ],
    ids=["none", "empty", "floating", "floating-text", "interval", "in-deduplicated", "mixed"],
)
def test_good_filters_parse_into_the_model(raw: Any, expected: ParsedFilters) -> None:
    assert parse_filters(raw) == expected


BAD_FILTERS = [
    ({"identifier": QUEUE, "in": ["Sales"]}, "filters must be a list of dicts"),
    (["label.conversations.queue"], "filters[0] must be a dict, got 'label.conversations.queue'."),
    ([{"identifier": QUEUE, "values": ["Sales"]}], "filters[0] has unknown key 'values'"),
    ([{"identifier": QUEUE, "nin": ["Sales"]}], "unknown key 'nin' (did you mean 'in'?)"),
    (
        [{"identifier": QUEUE, "in": ["Sales"], "not_in": ["Support"]}],
        "filters[0] has both 'in' and 'not_in'; use one per filter.",
    ),
    ([{"identifier": QUEUE}], "filters[0] needs 'in' or 'not_in'"),
    ([{"identifier": QUEUE, "in": []}], "filters[0] 'in' is empty; list at least one value."),
    ([{"identifier": QUEUE, "not_in": "Sales"}], "filters[0] 'not_in' must be a list of values"),
    (
        [{"identifier": QUEUE, "in": [3]}],
        "filters[0] 'in' must hold text values as reports show them, got 3.",
    ),
    ([{"identifier": "", "in": ["Sales"]}], "filters[0] needs 'identifier': a label's identifier"),
    ([{"in": ["Sales"]}], "filters[0] needs 'identifier'"),
    ([{"type": "relative", "from": -7, "to": -1}], "filters[0] has type 'relative'"),
    ([{"type": "floating", "from": -1, "to": -7}], "filters[0] has 'from' (-1) after 'to' (-7)"),
    ([{"type": "floating", "from": -7}], "filters[0] (floating) needs 'to'."),
    (
        [{"type": "floating", "from": "a week ago", "to": -1}],
        "filters[0] 'from' must be a whole number of days",
    ),
    ([{"type": "floating", "from": True, "to": -1}], "filters[0] 'from' must be a whole number of days"),
    (
        [{"type": "interval", "from": "2024-02-30", "to": "2024-03-01"}],
        "filters[0] 'from' must be a real date",
    ),
    (
        [{"type": "interval", "from": "2024-03-02", "to": "2024-03-01"}],
        "filters[0] has 'from' (2024-03-02) after 'to' (2024-03-01)",
    ),
    (
        [{"type": "floating", "form": -7, "to": -1}],
        "filters[0] has unknown key 'form' (did you mean 'from'?)",
    ),
    ([{"queue": "Sales"}], "filters[0] must have 'identifier' with 'in' or 'not_in'"),
    (
        [
            {"type": "floating", "from": -7, "to": -1},
            {"type": "interval", "from": "2024-03-01", "to": "2024-03-01"},
        ],
        "filters has 2 date filters; give at most one",
    ),
    (
        [{"identifier": QUEUE, "in": ["Sales"]}, {"identifier": QUEUE, "not_in": ["Support"]}],
        f"filters has {QUEUE} more than once",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_FILTERS, ids=[m for _, m in BAD_FILTERS])
def test_bad_filters_fail_with_one_sentence_naming_the_mistake(raw: Any, message: str) -> None:
    with pytest.raises(FlexInsightsInputError) as raised:
        parse_filters(raw)

    assert message in str(raised.value)


def test_every_mistake_is_reported_at_once() -> None:
    with pytest.raises(FlexInsightsInputError) as raised:
        parse_filters([{"identifier": QUEUE, "in": []}, {"type": "floating", "from": 1, "to": 0}])

    assert str(raised.value) == (
        "filters[0] 'in' is empty; list at least one value. filters[1] has 'from' (1) after 'to' (0); "
        "a floating range counts days from today (-7 is a week ago), both ends inclusive."
    )


def default_interval() -> tuple[str, str]:
    return ("2024-03-01", "2024-03-01")


@pytest.mark.parametrize(
    ("listed", "date_from", "date_to", "expected"),
    [
        (None, None, None, DateInterval("2024-03-01", "2024-03-01")),
        (None, "2024-02-01", "2024-02-03", DateInterval("2024-02-01", "2024-02-03")),
        (FloatingDateRange(-7, -1), None, None, FloatingDateRange(-7, -1)),
        (DateInterval("2024-01-01", "2024-01-02"), None, None, DateInterval("2024-01-01", "2024-01-02")),
    ],
    ids=["data-interval", "explicit", "floating-replaces-default", "listed-interval"],
)
def test_one_date_filter_per_export(listed: Any, date_from: Any, date_to: Any, expected: Any) -> None:
    assert choose_date_filter(listed, date_from, date_to, default_interval) == expected


@pytest.mark.parametrize(("date_from", "date_to"), [("2024-03-01", None), (None, "2024-03-01")])
def test_a_listed_date_filter_and_explicit_dates_conflict(date_from: Any, date_to: Any) -> None:
    with pytest.raises(
        FlexInsightsInputError, match="filters has a date filter \\(floating\\) and date_from"
    ):
        choose_date_filter(FloatingDateRange(-7, -1), date_from, date_to, default_interval)


def test_filters_round_trip_through_plain_dicts() -> None:
    raw = [
        {"type": "floating", "from": -7, "to": -1},
        {"identifier": QUEUE, "in": ["Sales"]},
        {"identifier": "label.conversations.channel", "not_in": ["sms"]},
    ]
    parsed = parse_filters(raw)

    assert [f.to_dict() for f in (parsed.date, *parsed.attributes) if f is not None] == raw
