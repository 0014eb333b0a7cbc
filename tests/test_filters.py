"""Filters beyond the date range: the parser (no server), then real exports through the emulator."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_flexinsights.emulator import (
    CHANNEL_LABEL,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    DIRECTION_LABEL,
    QUEUE_LABEL,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    render_report,
)
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsClient, FlexInsightsHook
from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.backoff import PollSchedule
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsApiError,
    FlexInsightsInputError,
    FlexInsightsNotFoundError,
)
from airflow_provider_flexinsights.library.export_spec import ExportSpec
from airflow_provider_flexinsights.library.filters import (
    AttributeFilter,
    DateInterval,
    FloatingDateRange,
    ParsedFilters,
    choose_date_filter,
    parse_filters,
)
from airflow_provider_flexinsights.library.operations import IDENTIFIER_URI, LookupCache
from airflow_provider_flexinsights.library.protocol import Credentials, Reply
from airflow_provider_flexinsights.library.session import Send, Session, Sleep

from tests.conftest import CONN_ENV, DagRunResult, connection_json

Run = Callable[..., DagRunResult]

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


# --- the protocol: filter entries, value lookups, answers given later ------------------------------

WS = "w" * 32
LABEL_URI = f"/gdc/md/{WS}/obj/20011"


def answer(status: int, body: object = b"", **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def test_filter_entries_have_the_documented_shapes() -> None:
    assert protocol.floating_date_filter("/d", -7, -1) == {
        "uri": "/d",
        "constraint": {"type": "floating", "from": -7, "to": -1},
    }
    assert protocol.element_list_filter(LABEL_URI, ["/e1", "/e2"]) == {
        "uri": LABEL_URI,
        "constraint": {"type": "list", "elements": ["/e1", "/e2"]},
    }


def test_value_lookups_post_an_empty_request_and_search_by_the_filter_parameter() -> None:
    by_text = protocol.valid_elements(WS, LABEL_URI, QUEUE, text="Sales")
    everything = protocol.valid_elements(WS, LABEL_URI, QUEUE, offset=1000)

    assert (by_text.method, by_text.path) == (
        "POST",
        f"/gdc/md/{WS}/obj/20011/validElements?offset=0&limit=1000&filter=Sales",
    )
    assert by_text.json == everything.json == {"validElementsRequest": {}}
    assert everything.path.endswith("validElements?offset=1000&limit=1000")
    assert by_text.action == f"look up the values of {QUEUE} in workspace {WS}"


def elements_answer(titles: list[str], **paging: object) -> Reply:
    items = [{"element": {"uri": f"/e?id={n}", "title": t}} for n, t in enumerate(titles)]
    return answer(200, {"validElements": {"items": items, "paging": paging}})


@pytest.mark.parametrize(
    ("reply", "offset", "next_offset"),
    [
        (elements_answer(["a", "b"], offset=0, count=2, total=2), 0, None),
        (elements_answer(["a", "b"], offset=0, count=2, total=5), 0, 2),
        (
            elements_answer(["c"], offset="4", count="1", total="5"),
            4,
            None,
        ),  # GoodData writes numbers as text
        (elements_answer(["a"], count=1, total="3", offset="0"), 0, 1),  # recorded: strings, no next
        (elements_answer([], total=9), 0, None),  # an empty page ends the listing whatever the total says
    ],
    ids=["one-page", "more-by-total", "last-page", "recorded-strings", "empty"],
)
def test_value_pages_say_where_the_next_one_starts(
    reply: Reply, offset: int, next_offset: int | None
) -> None:
    page = protocol.read_valid_elements(reply, offset)

    assert page.next_offset == next_offset
    assert all(isinstance(e, protocol.Element) for e in page.elements)


def test_a_value_answer_of_unknown_shape_is_a_clear_error() -> None:
    with pytest.raises(FlexInsightsApiError, match="value lookup in a shape this provider does not know"):
        protocol.read_valid_elements(answer(200, {"validElements": {"elements": []}}, X_GDC_Request="r1"), 0)


LOOKUP = protocol.valid_elements(WS, LABEL_URI, QUEUE, text="Sales")


REDIRECTED = protocol.Request("GET", "/gdc/md/x/obj/1/validElements?q=a&c=b", LOOKUP.action)
BASE = "https://analytics.ytica.com"


def from_url(reply: Reply, url: str) -> Reply:
    reply.url = url
    return reply


@pytest.mark.parametrize(
    ("sent", "reply", "expected"),
    [
        (LOOKUP, answer(200, {}), None),
        (LOOKUP, answer(202, Location="/gdc/md/x/tasks/1"), ("GET", "/gdc/md/x/tasks/1")),
        (LOOKUP, answer(202, {"uri": "/gdc/md/x/tasks/2?q=1"}), ("GET", "/gdc/md/x/tasks/2?q=1")),
        (REDIRECTED, answer(202), ("GET", REDIRECTED.path)),  # polled where it was sent, after a 303
        (LOOKUP, answer(202), ("GET", LOOKUP.path)),  # a POST is never repeated
    ],
    ids=["final", "202-location", "202-body-uri", "202-bare-after-303", "202-bare-post"],
)
def test_answers_still_computing_are_polled(
    sent: protocol.Request, reply: Reply, expected: tuple[str, str] | None
) -> None:
    polled = protocol.poll_target(sent, reply, BASE)

    assert (polled and (polled.method, polled.path)) == expected
    assert polled is None or polled.action == LOOKUP.action


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (answer(200, {}), None),
        (answer(303, Location="/gdc/md/x/r?a=b%3D"), ("GET", "/gdc/md/x/r?a=b%3D")),
        (from_url(answer(303, Location=f"{BASE}/gdc/md/x/r"), f"{BASE}/gdc/x"), ("GET", "/gdc/md/x/r")),
        (answer(307, Location="/gdc/account/profile/p1"), ("POST", "/gdc/account/profile/p1")),
    ],
    ids=["final", "303-relative", "303-absolute-same-host", "307-keeps-the-method"],
)
def test_redirects_are_followed_on_the_same_host(reply: Reply, expected: tuple[str, str] | None) -> None:
    followed = protocol.redirect_target(LOOKUP, reply, BASE)

    assert (followed and (followed.method, followed.path)) == expected
    assert followed is None or (followed.action, followed.auth) == (LOOKUP.action, LOOKUP.auth)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (answer(303), "HTTP 303 redirect without a Location"),
        (
            from_url(answer(307, Location="https://elsewhere.example/gdc/x"), f"{BASE}/gdc/y"),
            "pointed to elsewhere.example, not to the connection's base URL",
        ),
        (answer(303, Location="https://elsewhere.example/gdc/x"), "pointed to elsewhere.example"),
    ],
    ids=["no-location", "another-host", "absolute-no-source"],
)
def test_a_redirect_that_cannot_be_followed_safely_is_an_error(reply: Reply, message: str) -> None:
    with pytest.raises(FlexInsightsApiError, match=message):
        protocol.redirect_target(LOOKUP, reply, BASE)


def test_the_follow_flow_polls_a_202_after_a_wait_and_fetches_a_303_at_once() -> None:
    flow = Session(Credentials("a@b.c", "pw"), BASE).send_following(LOOKUP)
    effects: list[object] = []
    replies = iter(
        [
            answer(200, {"userLogin": {"profile": "/gdc/account/profile/p1", "token": "sst"}}),
            answer(200, {"userToken": {"token": "tt"}}),
            answer(202, Location="/t/1"),
            answer(303, Location="/t/1/result"),
            elements_answer(["Sales"], total=1),
        ]
    )
    effect = next(flow)
    try:
        while True:
            effects.append(effect)
            effect = flow.send(next(replies) if isinstance(effect, Send) else None)
    except StopIteration as done:
        final = done.value

    sends = [(e.request.method, e.request.path) for e in effects if isinstance(e, Send)]
    assert sends[2:] == [("POST", LOOKUP.path), ("GET", "/t/1"), ("GET", "/t/1/result")]
    sleeps = [i for i, e in enumerate(effects) if isinstance(e, Sleep)]
    assert len(sleeps) == 1 and isinstance(effects[sleeps[0] + 1], Send)  # one wait, after the 202
    assert effects[sleeps[0] + 1].request.path == "/t/1"  # type: ignore[union-attr]
    assert protocol.read_valid_elements(final, 0).elements[0].title == "Sales"


# --- the emulator: values, strict filters, filters applied -----------------------------------------

EXECUTE = f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw"
REPORT_URI = f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"


@pytest.fixture
def api(emulator: Emulator) -> Iterator[requests.Session]:
    """A raw HTTP session with a valid TT, to send requests the provider would never send."""
    http = requests.Session()
    login = {
        "postUserLogin": {"login": DEMO_EMAIL, "password": DEMO_PASSWORD, "remember": 0, "verify_level": 2}
    }
    sst = http.post(f"{emulator.url}/gdc/account/login", json=login).json()["userLogin"]["token"]
    tt = http.get(f"{emulator.url}/gdc/account/token", headers={"X-GDC-AuthSST": sst}).json()
    http.headers["X-GDC-AuthTT"] = tt["userToken"]["token"]
    yield http
    http.close()


def lookup(api: requests.Session, emulator: Emulator, body: Any, query: str = "") -> requests.Response:
    label = emulator.label(QUEUE_LABEL)
    return api.post(f"{emulator.url}{label.uri(DEMO_WORKSPACE)}/validElements{query}", json=body)


def test_emulator_looks_up_values_by_substring(api: requests.Session, emulator: Emulator) -> None:
    found = lookup(api, emulator, {"validElementsRequest": {}}, "?filter=sales").json()

    items = found["validElements"]["items"]
    assert [i["element"]["title"] for i in items] == ["Sales"]
    assert items[0]["element"]["uri"] == emulator.label(QUEUE_LABEL).element_uri(DEMO_WORKSPACE, "Sales")


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_max_page=2)])
def test_emulator_lists_all_values_in_pages(api: requests.Session, emulator: Emulator) -> None:
    first = lookup(api, emulator, {"validElementsRequest": {}}, "?offset=0&limit=1000").json()[
        "validElements"
    ]
    last = lookup(api, emulator, {"validElementsRequest": {}}, "?offset=4&limit=2").json()["validElements"]

    assert [i["element"]["title"] for i in first["items"]] == ["Sales", "Support"]
    assert first["paging"] == {"offset": "0", "count": 2, "total": "5"}  # as recorded: strings, no next
    assert [i["element"]["title"] for i in last["items"]] == ["Everyone"] and last["paging"]["offset"] == "4"


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_detour=(202, 303))])
def test_emulator_can_answer_a_lookup_later(api: requests.Session, emulator: Emulator) -> None:
    accepted = lookup(api, emulator, {"validElementsRequest": {}}, "?filter=Sales")
    see_other = api.get(f"{emulator.url}{accepted.headers['Location']}", allow_redirects=False)
    result = api.get(f"{emulator.url}{see_other.headers['Location']}", allow_redirects=False)

    assert (accepted.status_code, see_other.status_code, result.status_code) == (202, 303, 200)
    assert result.json()["validElements"]["items"][0]["element"]["title"] == "Sales"


def start(api: requests.Session, emulator: Emulator, *filters: Any) -> requests.Response:
    body = {"report_req": {"report": REPORT_URI, "context": {"filters": list(filters)}}}
    return api.post(f"{emulator.url}{EXECUTE}", json=body)


def queue_list(emulator: Emulator, *elements: str) -> dict[str, Any]:
    return {
        "uri": emulator.label(QUEUE_LABEL).uri(DEMO_WORKSPACE),
        "constraint": {"type": "list", "elements": list(elements)},
    }


@pytest.mark.parametrize(
    ("make_filter", "message"),
    [
        (lambda e: queue_list(e, "/gdc/md/x/obj/1/elements?id=1"), "is not a value of"),
        (queue_list, "non-empty list of element URIs"),
        (
            lambda e: {
                "uri": e.label(QUEUE_LABEL).uri(DEMO_WORKSPACE),
                "constraint": {"type": "interval", "from": "2024-03-01", "to": "2024-03-01"},
            },
            "Expected a list constraint",
        ),
        (
            lambda e: {"uri": e.date_label_uri(), "constraint": {"type": "floating", "from": -1, "to": -7}},
            "is after to",
        ),
        (
            lambda e: {"uri": e.date_label_uri(), "constraint": {"type": "floating", "from": "-7", "to": -1}},
            "whole-number",
        ),
        (
            lambda e: {
                "uri": f"/gdc/md/{DEMO_WORKSPACE}/obj/424242",
                "constraint": {"type": "list", "elements": ["/e"]},
            },
            "not found",
        ),
    ],
    ids=[
        "foreign-element",
        "empty-list",
        "interval-on-attribute",
        "floating-reversed",
        "floating-text",
        "unknown-label",
    ],
)
def test_emulator_rejects_malformed_filters(
    api: requests.Session, emulator: Emulator, make_filter: Any, message: str
) -> None:
    answer_ = start(api, emulator, make_filter(emulator))
    error = answer_.json()["error"]

    assert answer_.status_code == 400
    assert message in error["message"] % tuple(error["parameters"])


def test_emulator_rejects_a_label_filtered_twice(api: requests.Session, emulator: Emulator) -> None:
    sales = emulator.label(QUEUE_LABEL).element_uri(DEMO_WORKSPACE, "Sales")

    assert start(api, emulator, queue_list(emulator, sales), queue_list(emulator, sales)).status_code == 400


# --- the hook: identifiers and values to URIs, cached; exports with filters -----------------------

FAST = PollSchedule(first=0.01, cap=0.05)
TODAY = dt.date(2024, 3, 9)
LAST_WEEK = ("2024-03-02", "2024-03-08")  # -7..-1 from TODAY


def filtered_download(hook: FlexInsightsHook, *filters: Any) -> bytes:
    with hook.session() as client:
        return export_with(client, *filters)


def export_with(client: FlexInsightsClient, *filters: Any) -> bytes:
    uri = client.start_filtered_export(DEMO_WORKSPACE, QUEUE_REPORT, list(filters))
    status = client.wait_for_export(uri, schedule=FAST, deadline=time.time() + 10)
    with client.open_csv(status) as chunks:
        return b"".join(chunks)


def element_uris(emulator: Emulator, identifier: str, *titles: str) -> list[str]:
    return [emulator.label(identifier).element_uri(DEMO_WORKSPACE, t) for t in titles]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(today=TODAY)])
def test_floating_and_value_filters_select_days_and_rows(flex_connection: str, emulator: Emulator) -> None:
    body = filtered_download(
        FlexInsightsHook(),
        FloatingDateRange(-7, -1),
        AttributeFilter(QUEUE_LABEL, ("Support", "Sales")),
        AttributeFilter(CHANNEL_LABEL, ("voice",)),
    )

    where = {"Queue": {"Sales", "Support"}, "Channel": {"voice"}}
    assert body == render_report(DEMO_WORKSPACE, QUEUE_REPORT, *LAST_WEEK, where=where)
    rows = [line.split(b'","') for line in body.splitlines()[1:]]
    assert rows and {(r[0], r[3]) for r in rows} == {(b'"Sales', b"voice"), (b'"Support', b"voice")}
    assert emulator.received_filters() == [
        [
            {"uri": emulator.date_label_uri(), "constraint": {"type": "floating", "from": -7, "to": -1}},
            {
                "uri": emulator.label(QUEUE_LABEL).uri(DEMO_WORKSPACE),
                "constraint": {
                    "type": "list",
                    "elements": element_uris(emulator, QUEUE_LABEL, "Support", "Sales"),
                },
            },
            {
                "uri": emulator.label(CHANNEL_LABEL).uri(DEMO_WORKSPACE),
                "constraint": {"type": "list", "elements": element_uris(emulator, CHANNEL_LABEL, "voice")},
            },
        ]
    ]
    assert [e for e, _ in emulator.calls()].count("identifiers") == 1  # all three in one request


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_max_page=2)])
def test_not_in_sends_every_other_value_read_across_pages(flex_connection: str, emulator: Emulator) -> None:
    body = filtered_download(
        FlexInsightsHook(),
        DateInterval("2024-03-01", "2024-03-01"),
        AttributeFilter(QUEUE_LABEL, ("Everyone", "Billing"), exclude=True),
    )

    (sent,) = emulator.received_filters()
    assert sent[1]["constraint"]["elements"] == element_uris(
        emulator, QUEUE_LABEL, "Sales", "Support", "Retention"
    )
    assert [s for e, s in emulator.calls() if e == "elements"] == [200, 200, 200]  # 5 values, 2 a page
    where = {"Queue": {"Sales", "Support", "Retention"}}
    assert body == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where=where)


def test_not_in_leaving_out_everything_is_an_error(flex_connection: str, emulator: Emulator) -> None:
    with pytest.raises(FlexInsightsNotFoundError, match="leaves out every one of its 2 values"):
        filtered_download(
            FlexInsightsHook(),
            DateInterval("2024-03-01", "2024-03-01"),
            AttributeFilter(DIRECTION_LABEL, ("Inbound", "Outbound"), exclude=True),
        )

    assert "execute" not in [e for e, _ in emulator.calls()]


@pytest.mark.parametrize("exclude", [False, True], ids=["in", "not_in"])
def test_an_unknown_value_fails_with_close_matches(
    flex_connection: str, emulator: Emulator, exclude: bool
) -> None:
    with pytest.raises(FlexInsightsNotFoundError) as raised:
        filtered_download(
            FlexInsightsHook(),
            DateInterval("2024-03-01", "2024-03-01"),
            AttributeFilter(QUEUE_LABEL, ("Sales", "Suport", "Nowhere"), exclude=exclude),
        )

    assert str(raised.value) == (
        f"Flex Insights has no value 'Suport' (close matches: 'Support'), 'Nowhere' (no close match) for "
        f"{QUEUE_LABEL} in workspace {DEMO_WORKSPACE} (it has 5 values); "
        "write values exactly as reports show them."
    )
    assert "execute" not in [e for e, _ in emulator.calls()]


def test_an_unknown_identifier_fails_clearly(flex_connection: str, emulator: Emulator) -> None:
    with pytest.raises(
        FlexInsightsNotFoundError, match=r"could not find identifier label\.conversations\.team in workspace"
    ):
        filtered_download(
            FlexInsightsHook(),
            DateInterval("2024-03-01", "2024-03-01"),
            AttributeFilter("label.conversations.team", ("A",)),
        )


@pytest.mark.parametrize(
    "emulator_config",
    [
        EmulatorConfig(valid_elements_detour=(202, 303)),
        EmulatorConfig(valid_elements_detour=(303,)),
    ],
    ids=["202-then-303", "303"],
)
def test_value_lookups_answered_later_are_followed(flex_connection: str, emulator: Emulator) -> None:
    body = filtered_download(
        FlexInsightsHook(), DateInterval("2024-03-01", "2024-03-01"), AttributeFilter(QUEUE_LABEL, ("Sales",))
    )

    lookups = [s for e, s in emulator.calls() if e == "elements"]
    assert lookups[-1] == 200 and set(lookups[:-1]) <= {202, 303, 401} and len(lookups) >= 2
    assert body == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where={"Queue": {"Sales"}}
    )


def test_tt_renewal_applies_to_followed_lookups(flex_connection: str, emulator: Emulator) -> None:
    emulator.config.valid_elements_detour = (202, 202)
    emulator.config.faults.append(Fault("elements", "expire_tt", skip=1))

    filtered_download(
        FlexInsightsHook(), DateInterval("2024-03-01", "2024-03-01"), AttributeFilter(QUEUE_LABEL, ("Sales",))
    )

    assert [s for e, s in emulator.calls() if e in ("elements", "token")] == [200, 202, 401, 200, 202, 200]


def test_lookups_are_cached_per_connection_and_workspace(flex_connection: str, emulator: Emulator) -> None:
    filters = (
        FloatingDateRange(-1, -1),
        AttributeFilter(QUEUE_LABEL, ("Sales",)),
        AttributeFilter(CHANNEL_LABEL, ("sms",), exclude=True),
    )
    with FlexInsightsHook().session() as client:
        export_with(client, *filters)
        emulator.clear_requests()

        export_with(client, *filters)  # the same client (its cache), the same workspace: no lookups

    assert [e for e, _ in emulator.calls()] == ["execute", "export", "export", "export", "logout"]


def test_cached_lookups_expire_after_their_maximum_age() -> None:
    now = [0.0]
    cache = LookupCache(max_age=60.0, clock=lambda: now[0])
    cache.put(("url", "login", WS, IDENTIFIER_URI, QUEUE), "/gdc/md/x/obj/1")

    now[0] = 60.0
    kept = cache.get(("url", "login", WS, IDENTIFIER_URI, QUEUE))
    now[0] = 60.5

    assert (kept, cache.get(("url", "login", WS, IDENTIFIER_URI, QUEUE))) == ("/gdc/md/x/obj/1", None)


def test_another_login_looks_up_again(
    flex_connection: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.config.users["other@example.com"] = "other-password"
    filtered_download(FlexInsightsHook(), FloatingDateRange(-1, -1), AttributeFilter(QUEUE_LABEL, ("Sales",)))
    emulator.clear_requests()
    other = json.loads(connection_json(emulator.url))
    monkeypatch.setenv(
        CONN_ENV, json.dumps({**other, "login": "other@example.com", "password": "other-password"})
    )

    filtered_download(FlexInsightsHook(), FloatingDateRange(-1, -1), AttributeFilter(QUEUE_LABEL, ("Sales",)))

    assert {"identifiers", "elements"} <= {e for e, _ in emulator.calls()}  # what a user may see differs


# --- the operator: templated filters in real Airflow (dag.test) -------------------------------------

FAST_POLLS = {"poll_interval": 0.05, "max_poll_interval": 0.2}
LAST_WEEK_OF_SUPPORT = [
    {"type": "floating", "from": -7, "to": -1},
    {"identifier": QUEUE_LABEL, "in": ["{{ params.queue }}"]},  # Jinja renders inside filters
]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(today=TODAY)])
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_operator_exports_only_the_rows_its_filters_select(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path, deferrable: bool
) -> None:
    run = run_export(
        report_id=QUEUE_REPORT,
        filters=LAST_WEEK_OF_SUPPORT,
        params={"queue": "Support"},
        destination=str(tmp_path / "support.csv"),
        deferrable=deferrable,
        **FAST_POLLS,
    )

    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, *LAST_WEEK, where={"Queue": {"Support"}})
    assert run.task_state == "success"
    assert (tmp_path / "support.csv").read_bytes() == expected
    assert {line.split(b'","')[0] for line in expected.splitlines()[1:]} == {b'"Support'}
    assert emulator.received_filters() == [
        [
            {"uri": emulator.date_label_uri(), "constraint": {"type": "floating", "from": -7, "to": -1}},
            {
                "uri": emulator.label(QUEUE_LABEL).uri(DEMO_WORKSPACE),
                "constraint": {"type": "list", "elements": element_uris(emulator, QUEUE_LABEL, "Support")},
            },
        ]
    ]
    assert run.result is not None
    assert {k: run.result[k] for k in ("date_from", "date_to", "filters")} == {
        "date_from": None,  # the server picks the days of a floating range
        "date_to": None,
        "filters": [
            {"type": "floating", "from": -7, "to": -1},
            {"identifier": QUEUE_LABEL, "in": ["Support"]},
        ],
    }
    assert emulator.live_sessions == 0


def test_operator_with_value_filters_keeps_the_default_dates(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_export(
        logical_date="2024-03-02",
        report_id=QUEUE_REPORT,
        filters=[{"identifier": CHANNEL_LABEL, "not_in": ["sms", "chat"]}],
        destination=str(tmp_path / "voice.csv"),
        deferrable=False,
        **FAST_POLLS,
    )

    assert run.task_state == "success"
    (sent,) = emulator.received_filters()
    assert sent[0]["constraint"] == {"type": "interval", "from": "2024-03-02", "to": "2024-03-02"}
    assert sent[1]["constraint"]["elements"] == element_uris(emulator, CHANNEL_LABEL, "voice")
    where = {"Channel": {"voice"}}
    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-02", "2024-03-02", where=where)
    assert (tmp_path / "voice.csv").read_bytes() == expected
    assert run.result is not None and run.result["date_from"] == "2024-03-02"
    assert run.result["filters"] == [{"identifier": CHANNEL_LABEL, "not_in": ["sms", "chat"]}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"filters": [{"identifier": QUEUE_LABEL, "in": ["Sales"], "not_in": ["Support"]}]},
            "filters[0] has both 'in' and 'not_in'; use one per filter.",
        ),
        (
            {"filters": [{"identifier": QUEUE_LABEL, "valeus": ["Sales"]}]},
            "filters[0] has unknown key 'valeus'",
        ),
        ({"filters": [{"identifier": QUEUE_LABEL, "in": []}]}, "filters[0] 'in' is empty"),
        (
            {"filters": [{"type": "floating", "from": 0, "to": -7}]},
            "filters[0] has 'from' (0) after 'to' (-7)",
        ),
        (
            {"filters": [{"type": "floating", "from": -7, "to": -1}], "date_from": "2024-03-01"},
            "filters has a date filter (floating) and date_from/date_to are set too",
        ),
        ({"filters": {"identifier": QUEUE_LABEL}}, "filters must be a list of dicts"),
    ],
    ids=["in-and-not_in", "unknown-key", "empty-list", "from-after-to", "floating-and-dates", "not-a-list"],
)
def test_operator_rejects_bad_filters_before_any_request(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    message: str,
) -> None:
    run = run_export(retries=3, report_id=QUEUE_REPORT, destination=str(tmp_path / "out.csv"), **overrides)

    assert run.task_state == "failed"  # not up_for_retry: a retry cannot fix the DAG
    assert message in capfd.readouterr().out
    assert emulator.requests == []


def test_operator_fails_an_unknown_value_with_close_matches_and_no_export(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = run_export(
        retries=3,
        report_id=QUEUE_REPORT,
        filters=[{"identifier": QUEUE_LABEL, "in": ["Retension"]}],
        destination=str(tmp_path / "out.csv"),
    )

    assert run.task_state == "failed"
    assert f"Flex Insights has no value 'Retension' (close matches: 'Retention') for {QUEUE_LABEL}" in (
        capfd.readouterr().out
    )
    assert "execute" not in [e for e, _ in emulator.calls()] and not (tmp_path / "out.csv").exists()


def test_a_filtered_export_looks_each_thing_up_once(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    """The lookup cache belongs to the task's client: a second task looks up again, once, and no
    URI cached for another emulator (or workspace rebuild) can leak into it."""
    kwargs = {"report_id": QUEUE_REPORT, "filters": LAST_WEEK_OF_SUPPORT, "params": {"queue": "Support"}}
    run_export(destination=str(tmp_path / "a.csv"), deferrable=False, **kwargs, **FAST_POLLS)
    emulator.clear_requests()

    run = run_export(destination=str(tmp_path / "b.csv"), deferrable=False, **kwargs, **FAST_POLLS)

    assert run.task_state == "success"
    lookups = [e for e, _ in emulator.calls() if e in ("identifiers", "elements")]
    assert lookups == ["identifiers", "elements"]


def spec(*filters: Any, date_from: str | None = None) -> ExportSpec:
    date = DateInterval(date_from, date_from) if date_from else FloatingDateRange(-7, -1)
    return ExportSpec.of(DEMO_WORKSPACE, QUEUE_REPORT, date, tuple(filters), "/tmp/x.csv")


def test_the_filters_are_part_of_an_exports_identity() -> None:
    sales, support = AttributeFilter(QUEUE_LABEL, ("Sales",)), AttributeFilter(QUEUE_LABEL, ("Support",))

    assert spec(sales).identity() != spec(support).identity()  # a retry does not reuse the other export
    assert spec(sales).identity() != spec(sales, date_from="2024-03-01").identity()
    assert json.loads(json.dumps(spec(sales).identity())) == spec(sales).identity()  # JSON-able, stable
    assert spec(sales).describe() == (
        f"report {QUEUE_REPORT} in workspace {DEMO_WORKSPACE} for days -7..-1 relative to today "
        f"where {QUEUE_LABEL} in ['Sales']"
    )
