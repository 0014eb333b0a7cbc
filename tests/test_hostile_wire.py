"""The provider against a misbehaving server: tokens stay on the base URL's host, answers are not misread.

Each test puts :class:`~tests.hostile.HostileServer` between the provider and the emulator: the
login, tokens and exports are real, and one answer is replaced by what a hostile or broken server
(a misconfigured proxy, a captive portal, a compromised redirect) could send. A second server, the
"thief", records whatever reaches it: it must never see a request. Worker side through
``FlexInsightsHook``, triggerer side through ``FlexInsightsExportTrigger``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_flexinsights.emulator import DEMO_PASSWORD, DEMO_WORKSPACE, QUEUE_REPORT, Emulator
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.exceptions import FlexInsightsApiError, FlexInsightsError
from airflow_provider_flexinsights.library.protocol import Credentials
from airflow_provider_flexinsights.library.session import Send, Token

from tests.conftest import CONN_ENV, DagRunResult, connection_json, secrets_in
from tests.hostile import HostileServer, RawRequest, response
from tests.test_trigger import make_trigger, run_as_triggerer, start_export

PROFILE_CURRENT = "/gdc/account/profile/current"
EXECUTE_RAW = f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw"


@pytest.fixture
def thief() -> Iterator[HostileServer]:
    """Another host on loopback: any request that reaches it has left the connection's host."""
    with HostileServer() as server:
        yield server


@pytest.fixture
def wire(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """The connection's host: the emulator behind a server that may bend any answer."""
    with HostileServer(upstream=emulator.url) as server:
        monkeypatch.setenv(CONN_ENV, connection_json(server.url))
        yield server


def thief_port(thief: HostileServer) -> int:
    return int(thief.url.rsplit(":", 1)[1])


def redirect(location: str, status: int = 307) -> bytes:
    return response(status, headers={"Location": location})


def is_export_poll(request: RawRequest) -> bool:
    return request.method == "GET" and "/execute/raw/" in request.path


# --- Tokens never leave the base URL's origin -------------------------------------------------------

ELSEWHERE = ["http://127.0.0.1:{port}/steal", "//127.0.0.1:{port}/steal", "HTTP://127.0.0.1:{port}/steal"]
# Relative references that a text join turned into another host ("base" + "@127.0.0.1:..."):
# resolved as RFC 3986 says, they are paths on the connection's own host.
RELATIVE = ["@127.0.0.1:{port}/steal", ":{port}/steal", ".evil.test/steal"]


@pytest.mark.parametrize("shape", ELSEWHERE)
def test_a_redirect_to_another_host_is_refused_by_test_connection_in_one_sentence(
    wire: HostileServer, thief: HostileServer, shape: str
) -> None:
    wire.answer(PROFILE_CURRENT, redirect(shape.format(port=thief_port(thief))))

    ok, message = FlexInsightsHook().test_connection()

    assert not ok
    assert thief.requests == []
    assert f"the server pointed to 127.0.0.1:{thief_port(thief)}, not to the connection's base URL" in message


@pytest.mark.parametrize("shape", RELATIVE)
def test_a_relative_redirect_is_resolved_on_the_connections_own_host(
    wire: HostileServer, thief: HostileServer, shape: str
) -> None:
    location = shape.format(port=thief_port(thief))
    wire.answer(PROFILE_CURRENT, redirect(location))

    FlexInsightsHook().test_connection()

    assert thief.requests == []
    followed = wire.requests[wire.paths().index(PROFILE_CURRENT) + 1]
    assert followed.path == f"/gdc/account/profile/{location}"  # a path beside profile/current
    assert followed.header(protocol.TT_HEADER)  # the token went to the connection's host, and only there


@pytest.mark.parametrize("shape", ELSEWHERE + RELATIVE)
def test_an_export_uri_pointing_elsewhere_never_takes_tokens_there(
    wire: HostileServer, thief: HostileServer, shape: str
) -> None:
    uri = shape.format(port=thief_port(thief))
    wire.answer(EXECUTE_RAW, response(201, json.dumps({"uri": uri}).encode()))

    with pytest.raises(FlexInsightsError), FlexInsightsHook().session() as client:
        export_uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
        client.check_export(export_uri)  # a relative one is a path on the host: it answers 404

    assert thief.requests == []


@pytest.mark.parametrize("shape", ELSEWHERE)
def test_the_trigger_refuses_a_redirect_of_its_poll_to_another_host(
    wire: HostileServer, thief: HostileServer, shape: str
) -> None:
    export_uri = start_export()
    wire.answer(is_export_poll, redirect(shape.format(port=thief_port(thief))))

    events = run_as_triggerer(make_trigger(export_uri))

    assert thief.requests == []
    assert events[0]["status"] == "error"
    assert (
        f"pointed to 127.0.0.1:{thief_port(thief)}, not to the connection's base URL" in events[0]["message"]
    )


@pytest.mark.parametrize("shape", ELSEWHERE + RELATIVE)
def test_the_trigger_sends_nothing_for_an_export_uri_that_is_not_a_path(
    wire: HostileServer, thief: HostileServer, shape: str
) -> None:
    # An export URI reaches the trigger from the worker, which checked it; one that is not a plain
    # path (an old trigger row, a bug) is still never joined to the base URL as text.
    events = run_as_triggerer(make_trigger(shape.format(port=thief_port(thief))))

    assert thief.requests == []
    assert events[0]["status"] == "error"
    assert "it is not a path on the connection's base URL" in events[0]["message"]


# --- No header injection, no raw encoding errors ----------------------------------------------------

BAD_URIS = {
    "crlf": f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/1?q=a\r\nX-Injected: yes",
    "space": f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/1 HTTP/1.1",
    "non-latin-1": f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/\u0101\u4e2d",
}


@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
def test_an_export_uri_with_control_or_non_ascii_characters_is_refused_in_one_sentence(
    wire: HostileServer, uri: str
) -> None:
    wire.answer(EXECUTE_RAW, response(201, json.dumps({"uri": uri}).encode()))

    with pytest.raises(FlexInsightsApiError) as refused, FlexInsightsHook().session() as client:
        client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")

    assert "holds spaces, control or non-ASCII characters; this provider does not follow it." in str(
        refused.value
    )
    assert not any(r.header("X-Injected") for r in wire.requests)
    assert [r.path for r in wire.requests if "/execute/raw/" in r.path] == []


@pytest.mark.parametrize(
    "location",
    [b"/gdc/account/profile/a b", "/gdc/account/profile/\u0101".encode()],
    ids=["space", "utf-8"],
)
def test_the_trigger_refuses_a_redirect_location_with_spaces_or_non_ascii_characters(
    wire: HostileServer, location: bytes
) -> None:
    export_uri = start_export()
    wire.answer(is_export_poll, b"HTTP/1.1 307 X\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")

    events = run_as_triggerer(make_trigger(export_uri))

    assert events[0]["status"] == "error" and "this provider does not follow it" in events[0]["message"]
    assert not any("/gdc/account/profile/" in r.path for r in wire.requests)


def test_the_trigger_never_writes_cr_lf_from_an_export_uri_into_a_request(wire: HostileServer) -> None:
    events = run_as_triggerer(make_trigger(BAD_URIS["crlf"]))

    assert (
        events[0]["status"] == "error"
        and "it is not a path on the connection's base URL" in events[0]["message"]
    )
    assert not any(r.header("X-Injected") for r in wire.requests)
    assert not any("/execute/raw/" in r.path for r in wire.requests)


# --- Statuses: only 200 is a ready export -----------------------------------------------------------


def login_page() -> bytes:
    return response(302, b"<html>Sign in</html>", headers={"Location": "/login", "Content-Type": "text/html"})


def test_a_302_on_an_export_poll_is_an_error_not_a_ready_export(wire: HostileServer) -> None:
    with FlexInsightsHook().session() as client:
        export_uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
        wire.answer(is_export_poll, login_page())
        with pytest.raises(FlexInsightsApiError) as failed:
            client.check_export(export_uri)

    message = str(failed.value)
    assert message.startswith(f"Flex Insights could not fetch export {export_uri} (HTTP 302).")
    assert "a proxy, a login page" in message


def test_the_trigger_reports_a_302_on_its_poll_as_an_error(wire: HostileServer) -> None:
    export_uri = start_export()
    wire.answer(is_export_poll, login_page())

    events = run_as_triggerer(make_trigger(export_uri))

    assert events[0]["status"] == "error" and "(HTTP 302)" in events[0]["message"]
    assert events[0]["retryable"] is False


@pytest.mark.airflow
def test_an_export_task_answered_302_fails_in_one_sentence_and_writes_nothing(
    wire: HostileServer, run_export: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wire.answer(is_export_poll, login_page())
    destination = tmp_path / "out.csv"

    result: DagRunResult = run_export(  # type: ignore[operator]
        report_id=QUEUE_REPORT, date_from="2024-03-01", date_to="2024-03-01", destination=str(destination)
    )

    log = capsys.readouterr().out
    assert result.task_state == "failed"
    assert "(HTTP 302). This API never answers so" in log and "TypeError" not in log
    assert not destination.exists() and list(tmp_path.iterdir()) == []
    assert sum(is_export_poll(r) for r in wire.requests) == 1  # a 302 cannot succeed: never retried


# --- Secrets -----------------------------------------------------------------------------------------


def test_a_host_carrying_a_password_is_refused_before_any_request_without_printing_it(
    wire: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_userinfo = wire.url.replace("http://", "http://analyst:hunter2-secret@")
    monkeypatch.setenv(CONN_ENV, connection_json(with_userinfo))

    ok, message = FlexInsightsHook().test_connection()
    events = run_as_triggerer(make_trigger("/gdc/projects/x/execute/raw/1"))

    assert not ok and "has a user name or password in its host (before '@'); remove it" in message
    assert events[0]["status"] == "error" and "in its host (before '@')" in events[0]["message"]
    assert "hunter2" not in message + events[0]["message"]
    assert wire.requests == []


def test_objects_holding_the_password_or_tokens_hide_them_in_repr(wire: HostileServer) -> None:
    login = protocol.login("analyst@example.com", DEMO_PASSWORD)
    sent = Send(
        protocol.current_profile(), {protocol.TT_HEADER: "tt-secret", protocol.SST_HEADER: "sst-secret"}
    )
    hook = FlexInsightsHook()
    with hook.session() as client:
        client.verify_access()
        shown = " ".join(map(repr, [login, sent, Credentials("a@b.c", DEMO_PASSWORD), hook.settings, client]))
        shown += repr(client.session)
    token = Token("tt-secret")
    shown += f"{token} {token!r} {token!s} {[token]} { ({'tt': token}) }"

    assert DEMO_PASSWORD not in shown
    assert "tt-secret" not in shown and "sst-secret" not in shown


def echo_tokens(request: RawRequest) -> bytes:
    """An error that repeats the request's tokens in its request id and its message."""
    tokens = [request.header(protocol.TT_HEADER) or "", request.header(protocol.SST_HEADER) or ""]
    body = {"error": {"message": "Token %s (session %s) refused", "parameters": tokens}}
    return response(400, json.dumps(body).encode(), headers={"X-GDC-Request": "-".join(tokens)})


def retry_echoing_tokens(request: RawRequest) -> bytes:
    return response(503, headers={"X-GDC-Request": request.header(protocol.TT_HEADER) or ""})


def test_tokens_a_server_echoes_never_reach_an_error_or_a_log_line_in_a_worker(
    wire: HostileServer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with FlexInsightsHook().session() as client:
        export_uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
        wire.answer(is_export_poll, retry_echoing_tokens, times=1)
        wire.answer(is_export_poll, echo_tokens)
        with pytest.raises(FlexInsightsApiError) as refused:
            client.check_export(export_uri)

    told = str(refused.value) + caplog.text
    assert "Token *** (session ***) refused" in str(refused.value) and "retry 1" in caplog.text
    assert secrets_in(told, emulator) == []


def test_tokens_a_server_echoes_never_reach_an_event_or_a_log_line_in_the_triggerer(
    wire: HostileServer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    export_uri = start_export()
    wire.answer(is_export_poll, retry_echoing_tokens, times=1)
    wire.answer(is_export_poll, echo_tokens)

    events = run_as_triggerer(make_trigger(export_uri))

    told = json.dumps(events) + caplog.text
    assert "Token *** (session ***) refused" in events[0]["message"] and "retry 1" in caplog.text
    assert secrets_in(told, emulator) == []
