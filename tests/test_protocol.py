"""The protocol layer's decisions, which need no server: verdicts, error texts, waits."""

from __future__ import annotations

import email.utils
import itertools
import json

import pytest

from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.backoff import PollSchedule, RetryPolicy
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsAuthError,
    FlexInsightsNotFoundError,
    FlexInsightsTransientError,
)
from airflow_provider_flexinsights.library.protocol import Reply, Verdict

EXPORT = protocol.check_export("/gdc/projects/ws/execute/raw/1?q=a&c=b", "stream")


def reply(status: int, body: object = b"", **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


@pytest.mark.parametrize(
    ("request_", "answer", "verdict"),
    [
        (EXPORT, reply(202), Verdict.OK),
        (
            EXPORT,
            reply(401, WWW_Authenticate='GoodData realm="GoodData API", cookie=GDCAuthTT'),
            Verdict.TT_EXPIRED,
        ),
        (EXPORT, reply(401), Verdict.TT_EXPIRED),
        (
            EXPORT,
            reply(401, WWW_Authenticate="GoodData cookie=GDCAuthSST location=/gdc/account/login"),
            Verdict.SST_EXPIRED,
        ),
        (protocol.mint_temporary_token(), reply(401), Verdict.SST_EXPIRED),
        (protocol.login("a@b.c", "pw"), reply(401), Verdict.FAIL),
        (EXPORT, reply(429), Verdict.RETRY),
        (EXPORT, reply(503), Verdict.RETRY),
        (EXPORT, reply(400), Verdict.FAIL),
        (EXPORT, reply(404), Verdict.FAIL),
    ],
)
def test_verdicts_come_from_status_and_challenge_only(
    request_: protocol.Request, answer: Reply, verdict: Verdict
) -> None:
    assert protocol.judge(request_, answer) is verdict


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Object %s not found in %s", "parameters": ["/gdc/md/ws/obj/1", "ws"]}},
        {"message": "Object %s not found in %s", "parameters": ["/gdc/md/ws/obj/1", "ws"], "errorClass": "X"},
    ],
    ids=["wrapped", "bare"],
)
def test_server_message_fills_placeholders_in_both_error_shapes(body: object) -> None:
    assert protocol.server_message(json.dumps(body).encode()) == "Object /gdc/md/ws/obj/1 not found in ws"


def test_server_message_of_a_non_json_body_is_empty() -> None:
    assert protocol.server_message(b"<html>502 Bad Gateway</html>") == ""


def test_error_types_and_sentences() -> None:
    start = protocol.start_raw_export("ws", "42", [])
    not_found = protocol.error_for(start, reply(404, {"error": {"message": "gone"}}, X_GDC_Request="req-1"))
    busy = protocol.error_for(start, reply(503))
    bad_login = protocol.error_for(protocol.login("a@b.c", "secret-pw"), reply(401, {"message": "Bad Login"}))

    assert isinstance(not_found, FlexInsightsNotFoundError) and not not_found.retryable
    assert str(not_found) == (
        "Flex Insights could not start the export of report 42 in workspace ws (HTTP 404: gone) "
        "(request id req-1). Check the workspace and report ids "
        "(they are in the report's Analytics Portal URL)."
    )
    assert isinstance(busy, FlexInsightsTransientError) and busy.retryable
    assert isinstance(bad_login, FlexInsightsAuthError) and "secret-pw" not in str(bad_login)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert protocol.retry_after(reply(429, Retry_After="7")) == 7.0
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert protocol.retry_after(reply(429, Retry_After=date), now=1_000_000.0) == pytest.approx(30.0)
    assert protocol.retry_after(reply(429)) is None


def test_retry_policy_honours_retry_after_and_caps_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, max_total_wait=100.0)
    assert policy.delay(1, server_asked=12.0) == 12.0
    assert policy.delay(1, server_asked=500.0) == 100.0
    assert all(0 <= policy.delay(attempt) <= 8.0 for attempt in range(1, 20))


def test_poll_schedule_backs_off_to_the_cap() -> None:
    delays = list(itertools.islice(PollSchedule(first=1.0, cap=15.0).delays(), 8))
    assert 0.9 <= delays[0] <= 1.0 and 1.8 <= delays[1] <= 2.0
    assert all(13.5 <= d <= 15.0 for d in delays[5:])  # never beyond the cap


def test_an_export_ready_after_40_seconds_needs_at_most_15_polls() -> None:
    for _ in range(200):  # jitter: check many draws
        waited, polls = 0.0, 1  # the worker polls once right after starting the export
        for delay in PollSchedule().delays():
            waited += delay
            polls += 1
            if waited >= 40:
                break
        assert polls <= 15


# --- Discovery: report listing and object lookups -------------------------------------------------

WS = "flexinsightsdemoworkspace0000001"


def test_discovery_requests_are_authorized_gets_of_the_metadata_api() -> None:
    reports, report = protocol.list_reports(WS), protocol.read_object(WS, "3035643")

    assert (reports.method, reports.path, reports.auth) == (
        "GET",
        f"/gdc/md/{WS}/query/reports",
        protocol.Auth.TT,
    )
    assert (report.method, report.path, report.auth) == ("GET", f"/gdc/md/{WS}/obj/3035643", protocol.Auth.TT)
    assert reports.action == f"list the reports of workspace {WS}"
    assert report.action == f"read object 3035643 in workspace {WS}"


def test_report_list_reads_ids_titles_and_last_changes_from_the_gooddata_query_shape() -> None:
    import datetime as dt

    entry = {
        "link": f"/gdc/md/{WS}/obj/3035643",
        "title": "Queue performance",
        "updated": "2024-03-14 16:42:07",
        "summary": "Per queue",
        "author": "/gdc/account/profile/abc",
        "identifier": "aaeR8ZV3gsZh",
        "category": "report",
        "deprecated": "0",
        "tags": "",
    }
    bare = {"link": f"/gdc/md/{WS}/obj/7", "title": "Bare", "updated": "yesterday-ish"}
    answer = reply(200, {"query": {"entries": [entry, bare], "meta": {"category": "MD::Query::Object"}}})

    first, second = protocol.read_report_list(answer)

    assert first == protocol.ReportSummary(
        id="3035643",
        uri=f"/gdc/md/{WS}/obj/3035643",
        title="Queue performance",
        updated=dt.datetime(2024, 3, 14, 16, 42, 7),
        identifier="aaeR8ZV3gsZh",
        summary="Per queue",
        author="/gdc/account/profile/abc",
    )
    assert (second.id, second.title, second.updated, second.identifier) == ("7", "Bare", None, "")


def test_metadata_object_is_read_from_meta_whatever_its_category() -> None:
    import datetime as dt

    meta = {
        "uri": f"/gdc/md/{WS}/obj/4037",
        "title": "Date (mm/dd/yyyy)",
        "identifier": "date.date.mmddyyyy",
        "category": "attributeDisplayForm",
        "updated": "2023-06-01 00:00:00",
    }
    answer = reply(200, {"attributeDisplayForm": {"content": {"default": 1}, "meta": meta}})

    assert protocol.read_metadata_object(answer) == protocol.MetadataObject(
        id="4037",
        uri=f"/gdc/md/{WS}/obj/4037",
        title="Date (mm/dd/yyyy)",
        category="attributeDisplayForm",
        identifier="date.date.mmddyyyy",
        updated=dt.datetime(2023, 6, 1),
    )


@pytest.mark.parametrize(
    ("read", "body"),
    [
        (protocol.read_report_list, {"entries": []}),
        (protocol.read_report_list, {"query": {"entries": [{"title": "no link"}]}}),
        (protocol.read_metadata_object, {"report": {"content": {}}}),
        (protocol.read_metadata_object, {"a": {"meta": {}}, "b": {"meta": {}}}),
    ],
    ids=["no-query", "entry-without-link", "no-meta", "two-objects"],
)
def test_unexpected_answer_shapes_are_one_sentence_with_the_request_id(read: object, body: object) -> None:
    with pytest.raises(protocol.FlexInsightsApiError, match=r"shape .* \(request id req-9\); please report"):
        read(reply(200, body, X_GDC_Request="req-9"))  # type: ignore[operator]


def test_object_id_is_the_last_segment_of_an_object_uri() -> None:
    assert protocol.object_id(f"/gdc/md/{WS}/obj/3035643") == "3035643"
    assert protocol.object_id(f"/gdc/md/{WS}/obj/3035643/") == "3035643"
