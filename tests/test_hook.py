"""FlexInsightsHook itself: the connection read into settings (and refused before any request),
`test_connection` (the UI's Test button), the SST registered with Airflow's secret masker."""

from __future__ import annotations

import pytest

from airflow_provider_flexinsights.emulator import Emulator
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError

from tests.conftest import CONN_ENV, CONNECTION_TEST_CALLS, connection_json, masks_the_sst_only


def test_test_connection_reports_success_and_failure(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url))
    assert FlexInsightsHook().test_connection() == (
        True,
        f"Logged in to Flex Insights at {emulator.url} as analyst@example.com, and out again.",
    )
    assert emulator.calls() == CONNECTION_TEST_CALLS
    assert emulator.live_sessions == 0

    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, password="nope"))
    ok, message = FlexInsightsHook().test_connection()
    assert not ok and "Bad Login or Password!" in message and "nope" not in message


def test_test_connection_does_not_name_the_throwaway_id_the_ui_tests_under(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's Test button runs the hook under a random connection id: the message must not say it."""
    throwaway = "zq8x1k2m"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{throwaway.upper()}", connection_json(emulator.url, workspace_id="Bad-Id")
    )

    ok, message = FlexInsightsHook(throwaway).test_connection()

    assert not ok
    assert message.startswith("The extra workspace_id of this Flex Insights connection must be")
    assert throwaway not in message
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("host", "http://analytics.example.com", "plain http:// to analytics.example.com"),
        ("host", "ftp://127.0.0.1", "use a URL like https://analytics.ytica.com"),
        ("login", "", "has no login"),
        ("password", "", "has no password"),
        ("extra", {"workspace_id": "Not-A-Workspace"}, "32 lowercase letters and digits"),
    ],
)
def test_bad_connection_fields_are_rejected_before_any_request(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, field: str, value: object, error: str
) -> None:
    import json

    document = json.loads(connection_json(emulator.url))
    document[field] = value
    monkeypatch.setenv(CONN_ENV, json.dumps(document))

    with pytest.raises(FlexInsightsInputError, match=error), FlexInsightsHook().session() as client:
        client.verify_access()
    assert emulator.requests == []


def test_plain_http_to_another_host_is_allowed_only_when_asked(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    document = json.loads(connection_json(emulator.url))
    document["host"] = "http://emulator.internal:8765"
    document["extra"]["allow_insecure_http"] = True
    monkeypatch.setenv(CONN_ENV, json.dumps(document))

    assert FlexInsightsHook().settings.base_url == "http://emulator.internal:8765"


def test_empty_host_means_the_public_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(""))
    assert FlexInsightsHook().settings.base_url == "https://analytics.ytica.com"


def test_the_sst_is_registered_with_the_secret_masker_and_the_tt_is_not(
    flex_connection: str, emulator: Emulator
) -> None:
    def work() -> None:
        with FlexInsightsHook().session() as client:
            client.verify_access()

    assert masks_the_sst_only(emulator, work)
