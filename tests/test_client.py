"""The Airflow-free client, reached through FlexInsightsHook.session() against the emulator over loopback:
session lifecycle, exports, downloads, discovery, retries, errors."""

from __future__ import annotations

import time

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    Workspace,
    render_report,
)
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library.backoff import PollSchedule, RetryPolicy
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsAuthError,
    FlexInsightsNotFoundError,
    FlexInsightsTransientError,
)
from airflow_provider_flexinsights.library.protocol import ExportState

from tests.conftest import CONN_ENV, connection_json, secrets_in

FAST = PollSchedule(first=0.01, cap=0.05)


def download(hook: FlexInsightsHook, date_from: str, date_to: str, report: str = QUEUE_REPORT) -> bytes:
    with hook.session() as client:
        uri = client.start_export(DEMO_WORKSPACE, report, date_from, date_to)
        status = client.wait_for_export(uri, schedule=FAST, deadline=time.time() + 10)
        with client.open_csv(status) as chunks:
            return b"".join(chunks)


def test_export_downloads_exactly_what_the_server_serves(flex_connection: str, emulator: Emulator) -> None:
    body = download(FlexInsightsHook(), "2024-02-27", "2024-03-01")

    assert body == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-02-27", "2024-03-01")
    assert body.count(b"\r\n") > 100
    days = {line.split(b'","')[1] for line in body.splitlines()[1:]}
    assert days == {b"02/27/2024", b"02/28/2024", b"02/29/2024", b"03/01/2024"}


def test_session_logs_in_mints_tt_and_logs_out_in_order(flex_connection: str, emulator: Emulator) -> None:
    download(FlexInsightsHook(), "2024-03-01", "2024-03-01")

    assert emulator.calls() == [
        ("login", 200),
        ("token", 200),
        ("identifiers", 200),
        ("execute", 201),
        ("export", 202),
        ("export", 202),
        ("export", 200),  # the poll that finds it ready is the download
        ("logout", 204),
    ]
    login, token, identifiers, execute, *exports, logout = emulator.requests
    assert login.path == "/gdc/account/login" and token.path == "/gdc/account/token"
    assert identifiers.path == f"/gdc/md/{DEMO_WORKSPACE}/identifiers"
    assert execute.path == f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw"
    assert all(
        e.path.startswith(f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/") and "?q=" in e.path for e in exports
    )
    assert logout.method == "DELETE" and logout.path.startswith("/gdc/account/login/")
    assert emulator.live_sessions == 0


def test_identifier_request_and_filter_are_what_the_api_expects(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        label = client.resolve_identifier(DEMO_WORKSPACE, "date.date.mmddyyyy")
        client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-07")

    identifiers, execute = (r.body for r in emulator.requests[2:4])
    assert label.startswith(f"/gdc/md/{DEMO_WORKSPACE}/obj/")
    assert identifiers == {"identifierToUri": ["date.date.mmddyyyy"]}
    assert execute == {
        "report_req": {
            "report": f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}",
            "context": {
                "filters": [
                    {
                        "uri": label,
                        "constraint": {"type": "interval", "from": "2024-03-01", "to": "2024-03-07"},
                    }
                ]
            },
        }
    }


def test_identifier_uri_is_cached_per_workspace_by_the_client(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        for _ in range(2):
            client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")

    assert [call for call in emulator.calls() if call[0] == "identifiers"] == [("identifiers", 200)]


def test_empty_report_is_a_204_with_no_body(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, EMPTY_REPORT, "2024-03-01", "2024-03-01")
        status = client.wait_for_export(uri, schedule=FAST, deadline=time.time() + 10)
        with client.open_csv(status) as chunks:
            assert list(chunks) == []
    assert status.state is ExportState.EMPTY
    assert emulator.requests[-2].status == 204


def test_expired_tt_is_renewed_once_and_the_request_repeated(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
        emulator.expire_temporary_tokens()
        client.check_export(uri, success_body="discard")

    assert emulator.calls()[4:] == [("export", 401), ("token", 200), ("export", 202), ("logout", 204)]
    assert emulator.requests[4].path == emulator.requests[6].path == uri  # query string kept


def test_expired_sst_means_a_new_login(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
        emulator.expire_sessions()
        client.check_export(uri, success_body="discard")
        assert client.session.logins == 2

    assert emulator.calls()[4:] == [
        ("export", 401),  # TT rejected...
        ("token", 401),  # ...because the SST is gone too
        ("login", 200),
        ("token", 200),
        ("export", 202),
        ("logout", 204),
    ]
    assert emulator.live_sessions == 0


def test_logout_happens_when_a_step_fails(flex_connection: str, emulator: Emulator) -> None:
    with pytest.raises(FlexInsightsNotFoundError), FlexInsightsHook().session() as client:
        client.start_export(DEMO_WORKSPACE, "999999", "2024-03-01", "2024-03-01")

    assert emulator.calls()[-2:] == [("execute", 404), ("logout", 204)]
    assert emulator.live_sessions == 0


def test_unknown_report_names_workspace_report_server_message_and_request_id(
    flex_connection: str, emulator: Emulator
) -> None:
    with pytest.raises(FlexInsightsNotFoundError) as caught, FlexInsightsHook().session() as client:
        client.start_export(DEMO_WORKSPACE, "999999", "2024-03-01", "2024-03-01")

    message = str(caught.value)
    rejected = next(r for r in emulator.requests if r.status == 404)
    assert "report 999999 in workspace " + DEMO_WORKSPACE in message
    assert f"Object /gdc/md/{DEMO_WORKSPACE}/obj/999999 not found" in message  # %s filled from parameters
    assert "HTTP 404" in message and "request id emu-" in message and rejected.status == 404
    assert "Check the workspace and report ids" in message


def test_unknown_workspace_identifier_fails_with_a_clear_message(
    flex_connection: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.config.workspaces["otherworkspace000000000000000001"] = Workspace(identifiers=set())
    with (
        pytest.raises(
            FlexInsightsNotFoundError,
            match=r"could not find identifier date\.date\.mmddyyyy in workspace otherworkspace",
        ),
        FlexInsightsHook().session() as client,
    ):
        client.start_export("otherworkspace000000000000000001", QUEUE_REPORT, "2024-03-01", "2024-03-01")
    assert [endpoint for endpoint, _ in emulator.calls()] == ["login", "token", "identifiers", "logout"]


def test_bad_password_fails_once_without_retry_and_without_the_password(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, password="wrong-password-123"))

    with pytest.raises(FlexInsightsAuthError) as caught, FlexInsightsHook().session() as client:
        client.verify_access()

    assert emulator.calls() == [("login", 401)]
    assert "Bad Login or Password!" in str(caught.value)
    assert "wrong-password-123" not in str(caught.value)
    assert "Check the email (login) and password" in str(caught.value)


def test_tokens_never_appear_in_errors_or_reprs(flex_connection: str, emulator: Emulator) -> None:
    with pytest.raises(FlexInsightsNotFoundError) as caught, FlexInsightsHook().session() as client:
        client.resolve_identifier(DEMO_WORKSPACE, "date.date.mmddyyyy")
        text = repr(client.session) + repr(client.settings) + repr(vars(client.session).get("_login"))
        client.start_export(DEMO_WORKSPACE, "424242", "2024-03-01", "2024-03-01")

    assert len(emulator.issued_secrets) == 2
    assert secrets_in(text + str(caught.value) + repr(caught.value), emulator) == []
    assert DEMO_PASSWORD not in text


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(faults=[Fault("execute", status=429, count=1, retry_after="1")])]
)
def test_rate_limit_waits_as_told_then_retries(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook().session() as client:
        client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")

    limited, accepted = (r for r in emulator.requests if r.endpoint == "execute")
    assert (limited.status, accepted.status) == (429, 201)
    assert accepted.at - limited.at >= 1.0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=[Fault("login", status=503, count=2)])])
def test_server_errors_are_retried_with_backoff(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook(retry_policy=RetryPolicy(base_delay=0.05)).session() as client:
        client.verify_access()

    assert emulator.calls()[:4] == [("login", 503), ("login", 503), ("login", 200), ("token", 200)]


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(faults=[Fault("identifiers", status=500, count=99)])]
)
def test_retries_are_bounded_and_end_in_a_retryable_error(flex_connection: str, emulator: Emulator) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    with (
        pytest.raises(FlexInsightsTransientError) as caught,
        FlexInsightsHook(retry_policy=policy).session() as c,
    ):
        c.resolve_identifier(DEMO_WORKSPACE, "date.date.mmddyyyy")

    assert [call for call in emulator.calls() if call[0] == "identifiers"] == [("identifiers", 500)] * 3
    message = str(caught.value)
    assert caught.value.retryable and "HTTP 500" in message and "request id emu-" in message
    assert emulator.live_sessions == 0


def test_unreachable_server_is_a_retryable_error_after_bounded_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv(CONN_ENV, connection_json(f"http://127.0.0.1:{port}"))
    hook = FlexInsightsHook(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01))
    expected = (
        rf"could not log in: 127\.0\.0\.1:{port} refused the connection \(2 tries\); check that the host"
    )

    with pytest.raises(FlexInsightsTransientError, match=expected), hook.session() as client:
        client.verify_access()


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=[Fault("logout", status=503, count=5)])])
def test_logout_is_retried_briefly_and_never_fails_the_work(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook().session() as client:
        client.verify_access()

    assert emulator.calls() == [
        ("login", 200),
        ("token", 200),
        ("profile", 307),
        ("profile", 200),
        *[("logout", 503)] * 3,
    ]


# --- Discovery: reports, identifiers and objects through the same session ----------------------

UNKNOWN_WORKSPACE = "abcdefghijklmnopqrstuvwxyz012345"


def test_list_reports_gives_ids_titles_and_last_changes(flex_connection: str, emulator: Emulator) -> None:
    import datetime as dt

    with FlexInsightsHook().session() as client:
        reports = client.list_reports(DEMO_WORKSPACE)

    queue = reports[0]
    assert [r.id for r in reports] == [QUEUE_REPORT, EMPTY_REPORT, *(str(n) for n in range(3035645, 3035650))]
    assert queue.title == "Queue performance, 15 minute intervals"
    assert queue.updated == dt.datetime(2024, 3, 14, 16, 42, 7)
    assert queue.uri == f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"
    assert queue.summary and queue.author.startswith("/gdc/account/profile/") and queue.identifier
    assert emulator.calls() == [("login", 200), ("token", 200), ("query", 200), ("logout", 204)]


def test_list_reports_of_an_unknown_workspace_names_it_and_what_to_check(
    flex_connection: str, emulator: Emulator
) -> None:
    with pytest.raises(FlexInsightsNotFoundError) as caught, FlexInsightsHook().session() as client:
        client.list_reports(UNKNOWN_WORKSPACE)

    message = str(caught.value)
    assert message.startswith(f"Flex Insights could not list the reports of workspace {UNKNOWN_WORKSPACE} ")
    assert f"Project '{UNKNOWN_WORKSPACE}' does not exist" in message and "request id emu-" in message
    assert message.endswith(
        "Check the workspace id (the 32 characters after /projects/ in the Analytics "
        "Portal URL) and that the connection's user has access to it."
    )
    assert message.count(". ") == 1  # one sentence of what failed, one of what to do
    assert [c for c in emulator.calls() if c[0] == "query"] == [("query", 404)]  # not retried


def test_discovery_renews_an_expired_tt_like_every_request(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook().session() as client:
        client.verify_access()
        emulator.expire_temporary_tokens()
        client.list_reports(DEMO_WORKSPACE)

    assert emulator.calls()[4:] == [("query", 401), ("token", 200), ("query", 200), ("logout", 204)]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=[Fault("query", status=503, count=2)])])
def test_discovery_retries_transient_failures_with_backoff(flex_connection: str, emulator: Emulator) -> None:
    with FlexInsightsHook(retry_policy=RetryPolicy(base_delay=0.01)).session() as client:
        assert len(client.list_reports(DEMO_WORKSPACE)) == 7

    assert [c for c in emulator.calls() if c[0] == "query"] == [("query", 503)] * 2 + [("query", 200)]


def test_lookup_identifiers_asks_once_for_all_and_leaves_unknown_ones_out(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        first = client.lookup_identifiers(DEMO_WORKSPACE, ["date.date.mmddyyyy", "label.nowhere"])
        again = client.lookup_identifiers(DEMO_WORKSPACE, ["date.date.mmddyyyy"])

    assert list(first) == ["date.date.mmddyyyy"] and again == {
        "date.date.mmddyyyy": first["date.date.mmddyyyy"]
    }
    assert first["date.date.mmddyyyy"].startswith(f"/gdc/md/{DEMO_WORKSPACE}/obj/")
    identifiers = [r.body for r in emulator.requests if r.endpoint == "identifiers"]
    assert identifiers == [  # uncached: discovery shows what the server says now
        {"identifierToUri": ["date.date.mmddyyyy", "label.nowhere"]},
        {"identifierToUri": ["date.date.mmddyyyy"]},
    ]


def test_lookup_identifiers_in_an_unknown_workspace_names_it(
    flex_connection: str, emulator: Emulator
) -> None:
    with (
        pytest.raises(
            FlexInsightsNotFoundError, match=f"in workspace {UNKNOWN_WORKSPACE} .*Check the workspace id"
        ),
        FlexInsightsHook().session() as client,
    ):
        client.lookup_identifiers(UNKNOWN_WORKSPACE, ["date.date.mmddyyyy"])


def test_describe_object_reads_reports_and_labels(flex_connection: str, emulator: Emulator) -> None:
    from airflow_provider_flexinsights.library.protocol import object_id

    with FlexInsightsHook().session() as client:
        report = client.describe_object(DEMO_WORKSPACE, QUEUE_REPORT)
        label_uri = client.lookup_identifiers(DEMO_WORKSPACE, ["date.date.mmddyyyy"])["date.date.mmddyyyy"]
        label = client.describe_object(DEMO_WORKSPACE, object_id(label_uri))

    assert (report.id, report.category, report.title) == (
        QUEUE_REPORT,
        "report",
        "Queue performance, 15 minute intervals",
    )
    assert (label.uri, label.category, label.identifier, label.title) == (
        label_uri,
        "attributeDisplayForm",
        "date.date.mmddyyyy",
        "Date (mm/dd/yyyy)",
    )


def test_describe_an_unknown_object_says_which_and_what_to_check(
    flex_connection: str, emulator: Emulator
) -> None:
    with pytest.raises(FlexInsightsNotFoundError) as caught, FlexInsightsHook().session() as client:
        client.describe_object(DEMO_WORKSPACE, "999999")

    assert str(caught.value).startswith(
        f"Flex Insights could not read object 999999 in workspace {DEMO_WORKSPACE} (HTTP 404: "
        f"Object /gdc/md/{DEMO_WORKSPACE}/obj/999999 not found) (request id emu-"
    )
    assert str(caught.value).endswith(
        "Check the object id (the number after /obj/ in its URI) and the workspace id."
    )
