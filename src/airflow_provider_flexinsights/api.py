"""The export operations, as flows over a :class:`~.session.Session` (run by either transport)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flexinsights import protocol
from airflow_provider_flexinsights.backoff import PollSchedule
from airflow_provider_flexinsights.exceptions import (
    FlexInsightsExportGoneError,
    FlexInsightsExportTimeoutError,
    FlexInsightsNotFoundError,
)
from airflow_provider_flexinsights.protocol import ExportState, SuccessBody
from airflow_provider_flexinsights.session import Flow, Session, Sleep

# Identifier -> URI mappings are stable for a workspace: keep them for the life of the process.
# Keyed by (base URL, workspace id, identifier); never holds a credential.
_IDENTIFIER_CACHE: dict[tuple[str, str, str], str] = {}


def clear_identifier_cache() -> None:
    """Forget resolved identifiers (a workspace rebuilt under the same id, or test isolation)."""
    _IDENTIFIER_CACHE.clear()


@dataclass
class ExportStatus:
    """Where an export stands; ``reply`` holds the open CSV stream when READY was fetched to stream."""

    state: ExportState
    export_uri: str
    polls: int
    reply: protocol.Reply | None = field(default=None, repr=False)


class FlexInsightsApi:
    """Report exports: identifier resolution, starting an export, polling it until it is ready."""

    def __init__(self, session: Session, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    def verify_access(self) -> Flow[str]:
        """Log in, mint a TT and make one authorized call; return the login the server knows.

        Proves the base URL, the email and the password without touching any workspace.
        """
        reply = yield from self.session.send(protocol.current_profile())
        return protocol.read_profile_login(reply)

    def resolve_identifier(self, workspace_id: str, identifier: str) -> Flow[str]:
        key = (self.base_url, workspace_id, identifier)
        if key not in _IDENTIFIER_CACHE:
            reply = yield from self.session.send(protocol.resolve_identifiers(workspace_id, [identifier]))
            uri = protocol.read_identifiers(reply).get(identifier)
            if uri is None:
                raise FlexInsightsNotFoundError(
                    f"Flex Insights could not find identifier {identifier} in workspace {workspace_id} "
                    f"[request id {reply.request_id}]. Check the workspace id (the 32 characters after "
                    "/projects/ in the Analytics Portal URL) and that the workspace has this attribute.",
                    status=reply.status,
                    request_id=reply.request_id,
                )
            _IDENTIFIER_CACHE[key] = uri
        return _IDENTIFIER_CACHE[key]

    def start_export(self, workspace_id: str, report_id: str, date_from: str, date_to: str) -> Flow[str]:
        """Start a raw export of the report for the days ``date_from``..``date_to``; return its URI."""
        date_label = yield from self.resolve_identifier(workspace_id, protocol.DATE_IDENTIFIER)
        filters: list[dict[str, Any]] = [protocol.date_interval_filter(date_label, date_from, date_to)]
        reply = yield from self.session.send(protocol.start_raw_export(workspace_id, report_id, filters))
        return protocol.read_export_uri(reply)

    def check_export(self, export_uri: str, success_body: SuccessBody, polls: int = 0) -> Flow[ExportStatus]:
        """One poll. When the export is ready this GET is also the download (``success_body``)."""
        request = protocol.check_export(export_uri, success_body)
        reply = yield from self.session.send(request, passthrough=frozenset({404, 410}))
        if reply.status in (404, 410):
            raise protocol.error_for(
                request,
                reply,
                hint="The export expired; a new export with the same parameters can replace it.",
                error_type=FlexInsightsExportGoneError,
            )
        state = protocol.read_export_state(reply)
        return ExportStatus(state, export_uri, polls + 1, reply if state is ExportState.READY else None)

    def wait_for_export(
        self,
        export_uri: str,
        *,
        schedule: PollSchedule,
        deadline: float,
        success_body: SuccessBody,
        polls: int = 0,
    ) -> Flow[ExportStatus]:
        """Poll on ``schedule`` until the export is ready or empty; fail once ``deadline`` (epoch s) passes.

        The first poll comes after the schedule's first delay: callers reach here right after a
        poll of their own that found the export pending.
        """
        for delay in schedule.delays():
            remaining = deadline - time.time()
            if remaining <= 0:
                raise FlexInsightsExportTimeoutError(
                    f"Flex Insights export {export_uri} was still computing after {polls} polls when the "
                    "timeout ran out. Raise the operator's timeout, or narrow the date range."
                )
            yield Sleep(min(delay, remaining))
            status = yield from self.check_export(export_uri, success_body, polls)
            polls = status.polls
            if status.state is not ExportState.PENDING:
                return status
        raise AssertionError("unreachable")  # pragma: no cover
