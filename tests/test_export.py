"""The export job's typed trigger event: its payload form, and where a job resumes from it."""

from __future__ import annotations

import pytest

from airflow_provider_flexinsights.library.client import FlexInsightsClient
from airflow_provider_flexinsights.library.exceptions import FlexInsightsExportGoneError, ReportedError
from airflow_provider_flexinsights.library.export import (
    EventKind,
    ExportEvent,
    ExportJob,
    ExportPolicy,
    Step,
)
from airflow_provider_flexinsights.library.export_spec import ExportSpec
from airflow_provider_flexinsights.library.protocol import Credentials
from airflow_provider_flexinsights.library.validation import ConnectionSettings

URI = "/gdc/app/projects/w/execute/raw/1?q=1"


def job() -> ExportJob:
    """A job that sends nothing here: resuming from an event is pure bookkeeping."""
    settings = ConnectionSettings("c", "http://127.0.0.1:9", Credentials("a@b.c", "pw"), None)
    spec = ExportSpec("w" * 32, "1", "2024-03-01", "2024-03-01", "/tmp/x.csv")
    return ExportJob(FlexInsightsClient(settings), spec, ExportPolicy())


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        (
            ExportEvent(EventKind.READY, URI, 4, 100.0),
            {"status": "ready", "export_uri": URI, "polls": 4, "end_time": 100.0, "restarts": 0},
        ),
        (
            ExportEvent(EventKind.GONE, URI, 2, 100.0, restarts=0, message="It expired."),
            {
                "status": "gone",
                "export_uri": URI,
                "polls": 2,
                "end_time": 100.0,
                "restarts": 0,
                "message": "It expired.",
            },
        ),
        (
            ExportEvent(EventKind.ERROR, URI, 2, 100.0, message="Timed out.", retryable=True),
            {
                "status": "error",
                "export_uri": URI,
                "polls": 2,
                "end_time": 100.0,
                "restarts": 0,
                "message": "Timed out.",
                "retryable": True,
            },
        ),
    ],
    ids=["ready", "gone", "error"],
)
def test_the_payload_form_round_trips(event: ExportEvent, payload: dict[str, object]) -> None:
    assert event.to_payload() == payload
    assert ExportEvent.from_payload(payload) == event


def test_ready_resumes_at_the_explicit_ready_but_unfetched_step() -> None:
    state = ExportEvent(EventKind.READY, URI, 4, 100.0, restarts=1).resume_state(job())

    assert (state.step, state.export_uri, state.polls, state.deadline) == (
        Step.READY_UNFETCHED,
        URI,
        4,
        100.0,
    )
    assert state.replacements == 1 and state.reply is None


def test_empty_resumes_at_empty_and_gone_starts_a_replacement_once() -> None:
    assert ExportEvent(EventKind.EMPTY, URI, 3, 100.0).resume_state(job()).step is Step.EMPTY

    replaced = ExportEvent(EventKind.GONE, URI, 3, 100.0, message="Gone.").resume_state(job())
    assert (replaced.step, replaced.replacements, replaced.deadline) == (Step.START, 1, 100.0)

    with pytest.raises(FlexInsightsExportGoneError, match="already replaced once in this try"):
        ExportEvent(EventKind.GONE, URI, 3, 100.0, restarts=1, message="Gone.").resume_state(job())


@pytest.mark.parametrize("retryable", [True, False])
def test_an_error_event_raises_its_message_keeping_its_retryability(retryable: bool) -> None:
    event = ExportEvent(EventKind.ERROR, URI, 3, 100.0, message="Bad request.", retryable=retryable)

    with pytest.raises(ReportedError, match=r"Bad request\.") as raised:
        event.resume_state(job())
    assert raised.value.retryable is retryable


def test_an_event_from_before_restarts_existed_still_resumes() -> None:
    old = {"status": "ready", "export_uri": URI, "polls": 1, "end_time": 5.0}

    assert ExportEvent.from_payload(old).restarts == 0
