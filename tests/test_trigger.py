"""FlexInsightsExportTrigger, driven the way the triggerer drives it: rebuilt from serialize(), run()."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
)
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.triggers.flex_insights import FlexInsightsExportTrigger

from tests.conftest import masks_the_sst_only, secrets_in


def start_export(report_id: str = QUEUE_REPORT) -> str:
    with FlexInsightsHook().session() as client:
        return client.start_export(DEMO_WORKSPACE, report_id, "2024-03-01", "2024-03-02")


def make_trigger(export_uri: str, **overrides: Any) -> FlexInsightsExportTrigger:
    kwargs: dict[str, Any] = {
        "conn_id": "flex_insights_default",
        "export_uri": export_uri,
        "workspace_id": DEMO_WORKSPACE,
        "report_id": QUEUE_REPORT,
        "end_time": time.time() + 30,
        "poll_interval": 0.02,
        "max_poll_interval": 0.1,
        **overrides,
    }
    return FlexInsightsExportTrigger(**kwargs)


def run_as_triggerer(trigger: FlexInsightsExportTrigger) -> list[dict[str, Any]]:
    """Rebuild the trigger from its serialized form, as the triggerer does, and collect its events."""
    from airflow.sdk.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in rebuilt.run()]

    return asyncio.run(collect())


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(pending_polls=3)


def test_pending_then_ready_yields_one_ready_event(flex_connection: str, emulator: Emulator) -> None:
    export_uri = start_export()

    events = run_as_triggerer(make_trigger(export_uri))

    assert len(events) == 1
    assert events[0]["status"] == "ready" and events[0]["export_uri"] == export_uri
    polls = [r for r in emulator.requests if r.endpoint == "export"]
    assert [r.status for r in polls] == [202, 202, 202, 200]
    assert events[0]["polls"] == 4
    assert all("(aiohttp)" in r.user_agent for r in polls)  # polled from the event loop, not a worker


def test_trigger_logs_in_on_its_own_and_logs_out(flex_connection: str, emulator: Emulator) -> None:
    export_uri = start_export()
    before = len(emulator.requests)

    run_as_triggerer(make_trigger(export_uri))

    trigger_calls = [endpoint for endpoint, _ in emulator.calls()[before:]]
    assert trigger_calls == ["login", "token", "export", "export", "export", "export", "logout"]
    assert "execute" not in trigger_calls  # it never starts an export
    assert emulator.live_sessions == 0


def test_empty_report_yields_empty(flex_connection: str, emulator: Emulator) -> None:
    events = run_as_triggerer(make_trigger(start_export(EMPTY_REPORT)))

    assert [e["status"] for e in events] == ["empty"]
    assert emulator.calls()[-2:] == [("export", 204), ("logout", 204)]


@pytest.mark.parametrize(
    "emulator_config",
    [
        EmulatorConfig(
            pending_polls=0,
            faults=[Fault("export", "truncate", count=99, after_bytes=5)],
        )
    ],
)
def test_trigger_never_reads_the_csv_body(flex_connection: str, emulator: Emulator) -> None:
    # Every body breaks after 5 bytes: any attempt to read one would fail.
    events = run_as_triggerer(make_trigger(start_export()))

    assert [e["status"] for e in events] == ["ready"]


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(pending_polls=5, faults=[Fault("export", "gone", skip=2)])]
)
def test_expired_export_yields_a_gone_event_for_the_worker_to_replace(
    flex_connection: str, emulator: Emulator
) -> None:
    export_uri = start_export()

    events = run_as_triggerer(make_trigger(export_uri, restarts=0))

    assert [(e["status"], e["restarts"]) for e in events] == [("gone", 0)]
    assert f"could not fetch export {export_uri} (HTTP 410" in events[0]["message"]
    assert "a new export with the same parameters can replace it" in events[0]["message"]
    assert [e for e, _ in emulator.calls()].count("execute") == 1  # replacing is the worker's job
    assert emulator.live_sessions == 0


def test_a_failing_poll_yields_an_error_event_with_the_server_message(
    flex_connection: str, emulator: Emulator
) -> None:
    emulator.config.faults.append(Fault("export", status=400, count=99))

    events = run_as_triggerer(make_trigger(start_export()))

    assert [e["status"] for e in events] == ["error"]
    assert "(HTTP 400: Bad Request)" in events[0]["message"] and "request id emu-" in events[0]["message"]
    assert events[0]["retryable"] is False


def test_timeout_yields_an_error_event(flex_connection: str, emulator: Emulator) -> None:
    emulator.config.pending_polls = 10_000
    events = run_as_triggerer(make_trigger(start_export(), end_time=time.time() + 0.3))

    assert events[0]["status"] == "error"
    assert "still computing" in events[0]["message"] and "the operator's timeout" in events[0]["message"]
    assert events[0]["retryable"] is True
    assert emulator.live_sessions == 0


def test_serialize_round_trips_and_holds_no_secret(flex_connection: str, emulator: Emulator) -> None:
    trigger = make_trigger(start_export(), polls=1)
    classpath, kwargs = trigger.serialize()
    run_as_triggerer(trigger)

    assert classpath == "airflow_provider_flexinsights.triggers.flex_insights.FlexInsightsExportTrigger"
    assert FlexInsightsExportTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert set(kwargs) == {
        "conn_id",
        "export_uri",
        "workspace_id",
        "report_id",
        "end_time",
        "poll_interval",
        "max_poll_interval",
        "polls",
        "restarts",
    }
    text = json.dumps(kwargs) + repr(trigger)
    assert secrets_in(text, emulator) == [] and DEMO_PASSWORD not in text
    assert len(emulator.issued_secrets) >= 4  # the check above looked at real tokens


def test_the_sst_minted_in_the_event_loop_is_masked_and_the_tt_is_not(
    flex_connection: str, emulator: Emulator
) -> None:
    export_uri = start_export()

    assert masks_the_sst_only(emulator, lambda: run_as_triggerer(make_trigger(export_uri)))


def test_triggers_on_one_event_loop_share_one_session_per_connection(
    flex_connection: str, emulator: Emulator
) -> None:
    uris = [start_export() for _ in range(20)]
    emulator.clear_requests()
    triggers = [make_trigger(uri) for uri in uris]

    async def run_together() -> list[dict[str, Any]]:
        async def first_event(trigger: FlexInsightsExportTrigger) -> dict[str, Any]:
            (payload,) = [event.payload async for event in trigger.run()]
            return payload

        return await asyncio.gather(*(first_event(t) for t in triggers))

    events = asyncio.run(run_together())

    assert [e["status"] for e in events] == ["ready"] * 20
    assert [e for e, _ in emulator.calls()].count("login") == 1  # twenty triggers, one login
    assert [e for e, _ in emulator.calls()].count("token") == 1
    assert emulator.calls()[-1] == ("logout", 204)  # by the last trigger to finish
    assert emulator.live_sessions == 0
