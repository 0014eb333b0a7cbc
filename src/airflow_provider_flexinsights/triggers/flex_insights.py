"""The trigger that waits out an export's 202s in the triggerer, holding no worker slot."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsAsyncHook
from airflow_provider_flexinsights.library.backoff import PollSchedule
from airflow_provider_flexinsights.library.exceptions import FlexInsightsError, FlexInsightsExportGoneError
from airflow_provider_flexinsights.library.export import EventKind, ExportEvent


class FlexInsightsExportTrigger(BaseTrigger):
    """Poll an export already started by the worker until it is ready, then yield one event.

    The event is an :class:`~..library.export.ExportEvent` in its payload form (ready, empty, gone or
    error); the worker downloads the CSV when it resumes. The trigger only reads: it never starts an export
    and never reads the CSV body, so running it twice (triggerer restart, HA triggerers) is harmless.
    Its kwargs are ids, URIs and numbers only; tokens are minted inside :meth:`run`.

    :param conn_id: the ``flex_insights`` connection.
    :param export_uri: the URI returned when the export was started (query string included).
    :param workspace_id: for log and error messages.
    :param report_id: for log and error messages.
    :param poll_interval: seconds before the first poll; later polls back off exponentially.
    :param max_poll_interval: the longest wait between two polls, in seconds.
    :param end_time: epoch seconds after which waiting fails; absolute so a restart does not extend it.
    :param polls: polls made before this trigger started (carried into the event).
    :param restarts: expired exports already replaced in this try (carried into the event).
    """

    def __init__(
        self,
        *,
        conn_id: str,
        export_uri: str,
        workspace_id: str,
        report_id: str,
        end_time: float,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        polls: int = 0,
        restarts: int = 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.conn_id = conn_id
        self.export_uri = export_uri
        self.workspace_id = workspace_id
        self.report_id = report_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.polls = polls
        self.restarts = restarts

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Ids, URIs and numbers only: no token or password is ever stored with a trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "export_uri": self.export_uri,
                "workspace_id": self.workspace_id,
                "report_id": self.report_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "polls": self.polls,
                "restarts": self.restarts,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until ready, empty, gone or failed; yield one event saying which (never the CSV)."""
        event = await self._wait()
        self.log.info(
            "Flex Insights export of report %s in workspace %s: %s after %s polls, %.0f s before timeout.",
            self.report_id,
            self.workspace_id,
            event.kind.value,
            event.polls,
            self.end_time - time.time(),
        )
        yield TriggerEvent(event.to_payload())  # type: ignore[no-untyped-call]

    async def _wait(self) -> ExportEvent:
        schedule = PollSchedule(first=self.poll_interval, cap=self.max_poll_interval)
        waited = ExportEvent(EventKind.ERROR, self.export_uri, self.polls, self.end_time, self.restarts)
        try:
            async with FlexInsightsAsyncHook(self.conn_id).session() as client:
                status = await client.wait_for_export(
                    self.export_uri, schedule=schedule, deadline=self.end_time
                )
        except FlexInsightsExportGoneError as gone:  # the worker starts a replacement
            return replace(waited, kind=EventKind.GONE, message=str(gone))
        except FlexInsightsError as err:
            return replace(waited, message=str(err), retryable=err.retryable)
        return replace(waited, kind=EventKind(status.state.value), polls=self.polls + status.polls)
