"""Flex Insights clients with no Airflow in them: blocking for workers and the CLI, async for triggers.

Both run the same flows (:mod:`.operations`) over their transport, so they behave alike down to the retry
schedule. Whatever Airflow adds is injected: ``on_secret`` registers each freshly minted token with
a secret masker (the hooks pass Airflow's), and the async client's settings come from a callable
(the async hook reads the connection with Airflow's async API).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from airflow_provider_flexinsights.library.backoff import PollSchedule, RetryPolicy
from airflow_provider_flexinsights.library.exceptions import FlexInsightsDownloadError, FlexInsightsError
from airflow_provider_flexinsights.library.filters import ExportFilter
from airflow_provider_flexinsights.library.operations import ExportStatus, FlexInsightsApi, LookupCache
from airflow_provider_flexinsights.library.protocol import (
    LayoutColumn,
    MetadataObject,
    ReportSummary,
    SuccessBody,
)
from airflow_provider_flexinsights.library.session import Flow, Session, TransportError
from airflow_provider_flexinsights.library.transport import AsyncTransport, SyncTransport
from airflow_provider_flexinsights.library.validation import ConnectionSettings

T = TypeVar("T")

MaskSecret = Callable[[str], None]
AsyncMaskSecret = Callable[[str], Awaitable[None]]


def _scrub(err: FlexInsightsError, session: Session) -> None:
    """Take every token ``session`` held out of ``err``'s message, in place (type, status, cause stay)."""
    message = str(err)
    clean = session.scrub(message)
    if clean != message:
        err.args = (clean,)


def _no_masker(secret: str) -> None:
    """Outside Airflow (the CLI, benchmarks) there is no log masker to tell."""


async def _no_async_masker(secret: str) -> None:
    """The same, for the event loop."""


class FlexInsightsClient:
    """A Flex Insights session for blocking code; :meth:`close` logs out.

    :param on_secret: registers each minted token (SST, TT) with a log masker before anything
        else sees it; Airflow's hook passes ``mask_secret``.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        retry_policy: RetryPolicy | None = None,
        *,
        on_secret: MaskSecret = _no_masker,
    ) -> None:
        self.settings = settings
        self.session = Session(settings.credentials, settings.base_url, retry=retry_policy)
        self._api = FlexInsightsApi(self.session, settings.base_url, LookupCache())
        self._transport = SyncTransport(settings.base_url, on_secret=on_secret)

    def _run(self, flow: Flow[T]) -> T:
        """Run ``flow``; an error it raises carries no token the server may have echoed."""
        try:
            return self._transport.run(flow)
        except FlexInsightsError as err:
            _scrub(err, self.session)
            raise

    def verify_access(self) -> str:
        """Log in, mint a TT, read the user's profile; return the login (email) it names."""
        return self._run(self._api.verify_access())

    def resolve_identifier(self, workspace_id: str, identifier: str) -> str:
        """The workspace's object URI of ``identifier`` (cached by this client); not found raises."""
        return self._run(self._api.resolve_identifier(workspace_id, identifier))

    def start_export(self, workspace_id: str, report_id: str, date_from: str, date_to: str) -> str:
        """Start a raw export of ``report_id`` for the days ``date_from``..``date_to``; return its URI."""
        return self._run(self._api.start_export(workspace_id, report_id, date_from, date_to))

    def start_filtered_export(
        self, workspace_id: str, report_id: str, filters: Sequence[ExportFilter]
    ) -> str:
        """Start a raw export with one date filter and any attribute filters; return its URI.

        Identifiers and value titles are mapped to URIs first (cached per connection and workspace).
        """
        return self._run(self._api.start_filtered_export(workspace_id, report_id, filters))

    def check_export(
        self, export_uri: str, success_body: SuccessBody = "stream", *, polls: int = 0
    ) -> ExportStatus:
        """Poll once (``polls``: how many came before); READY holds the open CSV stream (:meth:`open_csv`)."""
        return self._run(self._api.check_export(export_uri, success_body, polls))

    def wait_for_export(
        self, export_uri: str, *, schedule: PollSchedule, deadline: float, polls: int = 0
    ) -> ExportStatus:
        """Poll in this process until ready or empty; READY comes with the open CSV stream."""
        flow = self._api.wait_for_export(
            export_uri, schedule=schedule, deadline=deadline, success_body="stream", polls=polls
        )
        return self._run(flow)

    @contextmanager
    def open_csv(self, status: ExportStatus) -> Iterator[Iterator[bytes]]:
        """The CSV body of a READY status as chunks (none for EMPTY); the response closes on exit.

        A stream that breaks before its end raises :class:`FlexInsightsDownloadError` from the
        chunks; :mod:`.export` fetches the export again.
        """
        if status.reply is None:
            yield iter(())
            return
        try:
            with self._transport.open_body(status.reply) as chunks:
                yield chunks
        except TransportError as err:
            raise FlexInsightsDownloadError(
                f"The download of Flex Insights export {status.export_uri} broke before its end ({err})."
            ) from err

    # --- Discovery -------------------------------------------------------------------------------

    def list_reports(self, workspace_id: str) -> list[ReportSummary]:
        """The workspace's reports (id, title, last change...); FlexInsightsNotFoundError if unknown."""
        return self._run(self._api.list_reports(workspace_id))

    def lookup_identifiers(self, workspace_id: str, identifiers: list[str]) -> dict[str, str]:
        """Identifier -> object URI, in one request; identifiers the workspace lacks are absent."""
        return self._run(self._api.lookup_identifiers(workspace_id, identifiers))

    def describe_object(self, workspace_id: str, object_id: str) -> MetadataObject:
        """Title, identifier and category of the object ``/gdc/md/{workspace_id}/obj/{object_id}``."""
        return self._run(self._api.describe_object(workspace_id, object_id))

    def report_layout(self, workspace_id: str, report_id: str) -> tuple[LayoutColumn, ...]:
        """The report's columns as its definition describes them: the headers each may have, its
        kind, a label's type (what a typed load matches the CSV's header against)."""
        return self._run(self._api.report_layout(workspace_id, report_id))

    def close(self) -> None:
        """Log out (deleting the SST and its TTs on the server) and release connections."""
        try:
            self._transport.run(self.session.log_out())
        finally:
            self._transport.close()


class AsyncFlexInsightsClient:
    """A Flex Insights session for the event loop: polls only, never reads a CSV body.

    :param on_secret: registers each minted token with a log masker without blocking the loop.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        retry_policy: RetryPolicy | None = None,
        *,
        on_secret: AsyncMaskSecret = _no_async_masker,
    ) -> None:
        self.settings = settings
        self.session = Session(settings.credentials, settings.base_url, retry=retry_policy)
        self._api = FlexInsightsApi(self.session, settings.base_url, LookupCache())
        self._transport = AsyncTransport(settings.base_url, on_secret=on_secret)

    async def _run(self, flow: Flow[T]) -> T:
        """Run ``flow``; an error it raises carries no token the server may have echoed."""
        try:
            return await self._transport.run(flow)
        except FlexInsightsError as err:
            _scrub(err, self.session)
            raise

    async def check_export(self, export_uri: str) -> ExportStatus:
        """Poll once, without reading a CSV body."""
        return await self._run(self._api.check_export(export_uri, "discard"))

    async def wait_for_export(
        self, export_uri: str, *, schedule: PollSchedule, deadline: float
    ) -> ExportStatus:
        """Poll until ready or empty, never reading the CSV body (that is the worker's job)."""
        flow = self._api.wait_for_export(
            export_uri, schedule=schedule, deadline=deadline, success_body="discard"
        )
        return await self._run(flow)

    async def close(self) -> None:
        """Log out and release the connection pool."""
        try:
            await self._transport.run(self.session.log_out())
        finally:
            await self._transport.close()


@dataclass
class SharedSession:
    """One logged-in client and how many are using it now."""

    client: AsyncFlexInsightsClient
    users: int = 0


ReadSettings = Callable[[], Awaitable[ConnectionSettings]]


class SharedSessions:
    """One logged-in client per connection on one event loop, kept while anyone uses it.

    A triggerer runs every trigger on one loop: sharing the session means one login, one TT and
    two masked secrets per connection instead of per trigger, and a single token renewal for all
    (the session's renewal is single-flight). The lock makes the connection lookup single-flight.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, SharedSession] = {}
        self._lock = asyncio.Lock()

    async def acquire(
        self, conn_id: str, read_settings: ReadSettings, on_secret: AsyncMaskSecret
    ) -> SharedSession:
        """The session of ``conn_id``, logging in (lazily) with ``read_settings()`` if none is open."""
        async with self._lock:
            shared = self._sessions.get(conn_id)
            if shared is None:
                client = AsyncFlexInsightsClient(await read_settings(), on_secret=on_secret)
                shared = self._sessions[conn_id] = SharedSession(client)
            shared.users += 1
            return shared

    async def release(self, conn_id: str, shared: SharedSession) -> None:
        """One user fewer; the last one logs out."""
        shared.users -= 1
        if shared.users == 0 and self._sessions.get(conn_id) is shared:
            del self._sessions[conn_id]
            await shared.client.close()

    @staticmethod
    def of_running_loop() -> SharedSessions:
        """The sessions of the running event loop (a triggerer has one; tests make many)."""
        loop = asyncio.get_running_loop()
        if loop not in _SHARED_SESSIONS:
            _SHARED_SESSIONS[loop] = SharedSessions()
        return _SHARED_SESSIONS[loop]


_SHARED_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedSessions] = (
    weakref.WeakKeyDictionary()
)
