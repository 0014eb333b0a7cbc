"""One export, start to finish, with no Airflow in it: the workflow every caller drives.

API (the export operator, the SQL loader and the ``flex-insights`` CLI all use exactly this)::

    job = ExportJob(client, spec, ExportPolicy(schedule, download_attempts=3), log=task_log,
                    memory=task_state_store,           # memory: reuse an earlier try's export...
                    memory_scope=round_of_tries)       # ...of the same round (a clear starts one)
    outcome = job.run(sink, JobState.start(deadline),  # or state=event.resume_state(deadline)
                      on_pending=defer,                # may raise to hand the waiting elsewhere
                      on_empty=check_empty)            # may raise to refuse an empty report
    outcome.export_uri, outcome.polls, outcome.empty, outcome.written  # written: what sink returned

- ``sink(chunks) -> W`` consumes one download attempt: the whole CSV body, or nothing. It is called
  once per attempt; when the stream breaks midway it raises :class:`FlexInsightsDownloadError`
  from the chunks, and the sink must discard what it took (the file writer removes its temporary,
  a database loader rolls its transaction back) before the job fetches the export again.
  An EMPTY export gives the sink no chunks.
- :class:`JobState` says where a job stands (:class:`Step`); a deferred job resumes from the state
  its :class:`ExportEvent` describes, including :attr:`Step.READY_UNFETCHED` ("the trigger saw it
  ready; the body is fetched next").
- An export that expires (404/410) anywhere on the way is replaced by a new one with the same
  parameters, once per try (``max_replacements``); a second expiry fails.
- :class:`ExportEvent` is the trigger's event: the one place its payload form is written.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from airflow_provider_flexinsights.library.backoff import PollSchedule
from airflow_provider_flexinsights.library.client import FlexInsightsClient
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsDownloadError,
    FlexInsightsExportGoneError,
    ReportedError,
)
from airflow_provider_flexinsights.library.export_spec import ExportSpec
from airflow_provider_flexinsights.library.operations import ExportStatus
from airflow_provider_flexinsights.library.protocol import ExportState, Reply

log = logging.getLogger(__name__)

W = TypeVar("W")

MEMORY_KEY = "flex_insights_export"
"""Where an export is remembered between tries (Airflow's task state store)."""


class Logs(Protocol):
    """Any logger: the stdlib's, or the structlog-style one of an Airflow task (``self.log``)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...
    def warning(self, msg: str, /, *args: Any) -> Any: ...


class Memory(Protocol):
    """A small key-value store that outlives a try (Airflow 3.3's task state store)."""

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> Any: ...


Sink = Callable[[Iterator[bytes]], W]
"""Consumes one download attempt, whole or not at all (see the module docstring)."""


class Step(enum.Enum):
    """Where an export job stands."""

    START = "start"  # no export yet, or the last one expired: start one
    PENDING = "pending"  # started, still computing: wait here, or defer
    READY_UNFETCHED = "ready_unfetched"  # ready as the trigger saw it; one GET fetches the body
    READY = "ready"  # the body is open: stream it to the sink
    EMPTY = "empty"  # no data for the range: the sink gets no chunks


_STEP_OF_STATE = {
    ExportState.PENDING: Step.PENDING,
    ExportState.READY: Step.READY,
    ExportState.EMPTY: Step.EMPTY,
}


@dataclass(frozen=True)
class JobState:
    """A job's position: enough to continue it here or after a deferral (the reply excepted)."""

    step: Step
    deadline: float  # epoch seconds: waiting fails after it, across deferrals
    export_uri: str = ""
    polls: int = 0
    replacements: int = 0  # expired exports replaced in this try
    reply: Reply | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, deadline: float) -> JobState:
        return cls(Step.START, deadline)

    def at(self, status: ExportStatus) -> JobState:
        """This job, at what a poll found."""
        return replace(
            self, step=_STEP_OF_STATE[status.state], export_uri=status.export_uri, polls=status.polls,
            reply=status.reply,
        )  # fmt: skip

    def status(self) -> ExportStatus:
        state = ExportState.EMPTY if self.step is Step.EMPTY else ExportState.READY
        return ExportStatus(state, self.export_uri, self.polls, self.reply)


@dataclass(frozen=True)
class ExportPolicy:
    """How patient a job is: poll schedule, download attempts, replacements of expired exports."""

    schedule: PollSchedule = field(default_factory=PollSchedule)
    download_attempts: int = 3
    max_replacements: int = 1


@dataclass(frozen=True)
class ExportOutcome(Generic[W]):
    """A finished export: its URI, how many polls it took, whether it was empty, what the sink made."""

    export_uri: str
    polls: int
    empty: bool
    written: W


class ExportJob:
    """Start (or reuse) one export, wait for it, replace it if it expires, download it with retries."""

    def __init__(
        self,
        client: FlexInsightsClient,
        spec: ExportSpec,
        policy: ExportPolicy,
        *,
        log: Logs = log,
        memory: Memory | None = None,
        memory_scope: int | str | None = None,
    ) -> None:
        """``memory_scope``: what a later try must share, besides the spec, to reuse the export
        ``memory`` holds (the operator passes its round of retries: a cleared task starts anew)."""
        self.client = client
        self.spec = spec
        self.policy = policy
        self.log = log
        self.memory = memory
        self.memory_scope = memory_scope

    def run(
        self,
        sink: Sink[W],
        state: JobState,
        *,
        on_pending: Callable[[JobState], None] | None = None,
        on_empty: Callable[[], None] | None = None,
    ) -> ExportOutcome[W]:
        """Drive the export from ``state`` to a consumed body.

        ``on_pending`` is called with the state whenever the export is still computing; raising
        there (an operator deferring) leaves the waiting to someone else, returning waits here.
        ``on_empty`` is called before an empty export reaches the sink; it may raise to refuse it.
        """
        if state.step is Step.START and state.replacements == 0:
            state = self._reusable(state) or state
        while True:
            try:
                return self._advance(sink, state, on_pending, on_empty)
            except FlexInsightsExportGoneError as gone:
                state = self.replace_expired(str(gone), state)

    def replace_expired(self, why: str, state: JobState) -> JobState:
        """Allow ``max_replacements`` replacements of an expired export per try; say so in the log."""
        if state.replacements >= self.policy.max_replacements:
            raise FlexInsightsExportGoneError(f"{why} It was already replaced once in this try; giving up.")
        self.log.warning("%s Starting a new export with the same parameters.", why)
        return JobState(Step.START, state.deadline, replacements=state.replacements + 1)

    def _advance(
        self,
        sink: Sink[W],
        state: JobState,
        on_pending: Callable[[JobState], None] | None,
        on_empty: Callable[[], None] | None,
    ) -> ExportOutcome[W]:
        client = self.client
        if state.step is Step.START:
            state = state.at(client.check_export(self._start()))
        if state.step is Step.READY_UNFETCHED:
            state = state.at(client.check_export(state.export_uri, polls=state.polls))
        if state.step is Step.PENDING:
            if on_pending is not None:
                on_pending(state)
            status = client.wait_for_export(
                state.export_uri, schedule=self.policy.schedule, deadline=state.deadline, polls=state.polls
            )
            state = state.at(status)
        if state.step is Step.EMPTY and on_empty is not None:
            on_empty()
        return self._download(sink, state)

    def _download(self, sink: Sink[W], state: JobState) -> ExportOutcome[W]:
        status = state.status()
        written, status = download(self.client, status, sink, self.policy.download_attempts, log=self.log)
        return ExportOutcome(status.export_uri, status.polls, status.state is ExportState.EMPTY, written)

    # --- starting and reusing ------------------------------------------------------------------

    def _start(self) -> str:
        spec = self.spec
        export_uri = self.client.start_filtered_export(
            spec.workspace_id, spec.report_id, spec.export_filters()
        )
        self.log.info("Started the Flex Insights export of %s: %s", spec.describe(), export_uri)
        if self.memory is not None:
            remembered = {"export_uri": export_uri, "spec": spec.identity(), "scope": self.memory_scope}
            self.memory.set(MEMORY_KEY, remembered)
        return export_uri

    def _reusable(self, state: JobState) -> JobState | None:
        """The export an earlier try started for the same spec, if it is still there.

        So a retry after a worker crash or a broken download does not run the report again; an
        export of another scope (a task cleared since, for fresh data) is not reused.
        """
        earlier = self.memory.get(MEMORY_KEY) if self.memory is not None else None
        if not (isinstance(earlier, dict) and earlier.get("spec") == self.spec.identity()):
            return None
        if earlier.get("scope") != self.memory_scope:
            self.log.info("The export of an earlier try predates a clear of the task; starting a new one.")
            return None
        try:
            status = self.client.check_export(earlier["export_uri"])
        except FlexInsightsExportGoneError:
            self.log.info("The export started by an earlier try has expired; starting a new one.")
            return None
        self.log.info("Reusing the export started by an earlier try: %s", status.export_uri)
        return state.at(status)


def download(
    client: FlexInsightsClient, status: ExportStatus, sink: Sink[W], attempts: int = 3, *, log: Logs = log
) -> tuple[W, ExportStatus]:
    """Hand a READY (or EMPTY) export's body to ``sink``, up to ``attempts`` times in all.

    A stream that breaks midway is fetched again from the start (the sink has discarded the
    broken attempt); returns what the sink made and the status of the attempt it took.
    """
    for attempt in itertools.count(1):
        try:
            with client.open_csv(status) as chunks:
                return sink(chunks), status
        except FlexInsightsDownloadError as broken:
            if attempt >= attempts:
                raise
            log.warning("%s Downloading it again (%d of %d).", broken, attempt + 1, attempts)
            status = client.check_export(status.export_uri, polls=status.polls)
    raise AssertionError("unreachable")  # pragma: no cover


# --- the trigger's event ------------------------------------------------------------------------


class EventKind(enum.Enum):
    """What the trigger found. READY means it saw the export ready; it never fetched the body."""

    READY = "ready"
    EMPTY = "empty"
    GONE = "gone"  # expired while waiting: the worker replaces it
    ERROR = "error"  # waiting failed (timeout, API error): the worker fails with the message


@dataclass(frozen=True)
class ExportEvent:
    """The trigger's one event, and its payload form (JSON-able: ids, URIs and numbers, never a token).

    Payload: ``{"status", "export_uri", "polls", "end_time", "restarts"}``, plus ``message`` when
    gone or on error, and ``retryable`` on error.
    """

    kind: EventKind
    export_uri: str
    polls: int
    end_time: float
    restarts: int = 0
    message: str | None = None
    retryable: bool = False

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "status": self.kind.value,
            "export_uri": self.export_uri,
            "polls": self.polls,
            "end_time": self.end_time,
            "restarts": self.restarts,
        }
        if self.kind in (EventKind.GONE, EventKind.ERROR):
            payload["message"] = self.message
        if self.kind is EventKind.ERROR:
            payload["retryable"] = self.retryable
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ExportEvent:
        return cls(
            kind=EventKind(payload["status"]),
            export_uri=payload["export_uri"],
            polls=payload["polls"],
            end_time=payload["end_time"],
            restarts=payload.get("restarts", 0),
            message=payload.get("message"),
            retryable=payload.get("retryable", False),
        )

    def resume_state(self, job: ExportJob) -> JobState:
        """Where ``job`` continues after this event; an error raises it, an expiry counts a replacement."""
        state = JobState(Step.START, self.end_time, self.export_uri, self.polls, self.restarts)
        if self.kind is EventKind.ERROR:
            raise ReportedError(self.message or "The trigger failed.", retryable=self.retryable)
        if self.kind is EventKind.GONE:
            return job.replace_expired(self.message or "", state)
        step = Step.EMPTY if self.kind is EventKind.EMPTY else Step.READY_UNFETCHED
        return replace(state, step=step)
