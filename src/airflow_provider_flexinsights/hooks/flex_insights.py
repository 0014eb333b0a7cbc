"""Hooks: an Airflow connection in, a logged-in Flex Insights session out, logged out afterwards.

:class:`FlexInsightsHook` serves workers (blocking ``requests``); :class:`FlexInsightsAsyncHook`
serves triggers (``httpx`` on the event loop, connection read with Airflow's async API). Both run
the same flows (:mod:`..api`), so they behave alike down to the retry schedule.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk import BaseHook

from airflow_provider_flexinsights import validation
from airflow_provider_flexinsights.api import ExportStatus, FlexInsightsApi
from airflow_provider_flexinsights.backoff import PollSchedule, RetryPolicy
from airflow_provider_flexinsights.exceptions import FlexInsightsDownloadError, FlexInsightsError
from airflow_provider_flexinsights.filters import ExportFilter
from airflow_provider_flexinsights.protocol import MetadataObject, ReportSummary, SuccessBody
from airflow_provider_flexinsights.session import Session, TransportError
from airflow_provider_flexinsights.transport import AsyncTransport, SyncTransport
from airflow_provider_flexinsights.validation import ConnectionSettings

if TYPE_CHECKING:
    from airflow_provider_flexinsights.storage import WrittenFile

log = logging.getLogger(__name__)


class Warns(Protocol):
    """Any logger: the stdlib's, or the structlog-style one of an Airflow task (``self.log``)."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...


def _mask_secret(secret: str) -> None:
    """Register a freshly minted token with Airflow's secret masker (imported lazily: parse speed)."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


async def _amask_secret(secret: str) -> None:
    """The same, without a blocking call to the supervisor from inside the event loop.

    Airflow 3.3 added ``amask_secret``; before it, ``mask_secret`` was the one safe in both worlds.
    """
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow < 3.3
        _mask_secret(secret)
    else:
        await amask_secret(secret)


def _settings(conn_id: str, conn: Any, extra: dict[str, Any], where: str | None = None) -> ConnectionSettings:
    return validation.connection_settings(
        conn_id,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        extra=extra,
        where=where,
    )


class FlexInsightsClient:
    """A Flex Insights session for blocking code. Use it through :meth:`FlexInsightsHook.session`."""

    def __init__(self, settings: ConnectionSettings, retry_policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.session = Session(settings.credentials, retry=retry_policy)
        self._api = FlexInsightsApi(self.session, settings.base_url)
        self._transport = SyncTransport(settings.base_url, on_secret=_mask_secret)

    def verify_access(self) -> str:
        """Log in, mint a TT, read the user's profile; return the login (email) it names."""
        return self._transport.run(self._api.verify_access())

    def resolve_identifier(self, workspace_id: str, identifier: str) -> str:
        """The workspace's object URI of ``identifier`` (cached for the process); not found raises."""
        return self._transport.run(self._api.resolve_identifier(workspace_id, identifier))

    def start_export(self, workspace_id: str, report_id: str, date_from: str, date_to: str) -> str:
        """Start a raw export of ``report_id`` for the days ``date_from``..``date_to``; return its URI."""
        return self._transport.run(self._api.start_export(workspace_id, report_id, date_from, date_to))

    def start_filtered_export(
        self, workspace_id: str, report_id: str, filters: Sequence[ExportFilter]
    ) -> str:
        """Start a raw export with one date filter and any attribute filters; return its URI.

        Identifiers and value titles are mapped to URIs first (cached per connection and workspace).
        """
        return self._transport.run(self._api.start_filtered_export(workspace_id, report_id, filters))

    def check_export(
        self, export_uri: str, success_body: SuccessBody = "stream", *, polls: int = 0
    ) -> ExportStatus:
        """Poll once (``polls``: how many came before); READY holds the open CSV stream (:meth:`open_csv`)."""
        return self._transport.run(self._api.check_export(export_uri, success_body, polls))

    def wait_for_export(
        self, export_uri: str, *, schedule: PollSchedule, deadline: float, polls: int = 0
    ) -> ExportStatus:
        """Poll in this process until ready or empty; READY comes with the open CSV stream."""
        flow = self._api.wait_for_export(
            export_uri, schedule=schedule, deadline=deadline, success_body="stream", polls=polls
        )
        return self._transport.run(flow)

    @contextmanager
    def open_csv(self, status: ExportStatus) -> Iterator[Iterator[bytes]]:
        """The CSV body of a READY status as chunks (none for EMPTY); the response closes on exit."""
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

    def download(
        self,
        status: ExportStatus,
        destination: str,
        *,
        attempts: int = 3,
        track: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
        logger: Warns = log,
    ) -> WrittenFile:
        """Stream a READY (or EMPTY) export to ``destination``, whole or not at all.

        A stream that breaks midway is fetched again from the start, up to ``attempts`` times in
        all; nothing is written meanwhile. ``track`` may wrap the chunks (a progress display);
        ``logger`` says each new attempt (an operator passes its task log).
        """
        from airflow_provider_flexinsights.storage import write_atomically

        for attempt in itertools.count(1):
            try:
                with self.open_csv(status) as chunks:
                    return write_atomically(destination, track(chunks) if track else chunks)
            except FlexInsightsDownloadError as broken:
                if attempt >= attempts:
                    raise
                logger.warning("%s Downloading it again (%d of %d).", broken, attempt + 1, attempts)
                status = self.check_export(status.export_uri, polls=status.polls)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- Discovery -------------------------------------------------------------------------------

    def list_reports(self, workspace_id: str) -> list[ReportSummary]:
        """The workspace's reports (id, title, last change...); FlexInsightsNotFoundError if unknown."""
        return self._transport.run(self._api.list_reports(workspace_id))

    def lookup_identifiers(self, workspace_id: str, identifiers: list[str]) -> dict[str, str]:
        """Identifier -> object URI, in one request; identifiers the workspace lacks are absent."""
        return self._transport.run(self._api.lookup_identifiers(workspace_id, identifiers))

    def describe_object(self, workspace_id: str, object_id: str) -> MetadataObject:
        """Title, identifier and category of the object ``/gdc/md/{workspace_id}/obj/{object_id}``."""
        return self._transport.run(self._api.describe_object(workspace_id, object_id))

    def close(self) -> None:
        """Log out (deleting the SST and its TTs on the server) and release connections."""
        try:
            self._transport.run(self.session.log_out())
        finally:
            self._transport.close()


class FlexInsightsHook(BaseHook):
    """Talks to Flex Insights with the credentials of a ``flex_insights`` connection.

    ``login`` is the Analytics Portal user's email, ``password`` its password, ``host`` the base URL
    (empty: https://analytics.ytica.com), extra ``workspace_id`` the default workspace. Every session
    logs out when its ``with`` block ends, so no SST outlives the task that minted it.

    :param flex_insights_conn_id: the Airflow connection to use.
    :param retry_policy: backoff for 429, 5xx and network failures (default: 5 tries, at most
        5 minutes of waiting per request).
    """

    conn_name_attr = "flex_insights_conn_id"
    default_conn_name = "flex_insights_default"
    conn_type = "flex_insights"
    hook_name = "Flex Insights"

    def __init__(
        self, flex_insights_conn_id: str = default_conn_name, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.flex_insights_conn_id = flex_insights_conn_id
        self.retry_policy = retry_policy

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The validated connection (raises FlexInsightsInputError naming the field to fix)."""
        return self._read_settings()

    def _read_settings(self, where: str | None = None) -> ConnectionSettings:
        """Read and validate the connection; ``where`` names it in errors (default: by its id)."""
        conn = self.get_connection(self.flex_insights_conn_id)
        return _settings(self.flex_insights_conn_id, conn, conn.extra_dejson, where)

    @contextmanager
    def session(self) -> Iterator[FlexInsightsClient]:
        """A client that logs in on first use and logs out when the block ends, even on error."""
        client = FlexInsightsClient(self.settings, self.retry_policy)
        try:
            yield client
        finally:
            client.close()

    def get_conn(self) -> ConnectionSettings:
        """The validated connection settings (``BaseHook``'s conventional accessor)."""
        return self.settings

    def test_connection(self) -> tuple[bool, str]:
        """Log in, mint a TT, make one authorized call, log out: proves URL, email and password.

        The UI's Test button runs this under a throwaway connection id, so messages about the
        connection's fields say "this connection" rather than naming an id the user never chose.
        """
        try:
            self.settings = self._read_settings(where="This Flex Insights connection")
            with self.session() as client:
                login = client.verify_access()
        except FlexInsightsError as err:
            return False, str(err)
        return True, f"Logged in to Flex Insights at {self.settings.base_url} as {login}, and out again."

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow releases that do not read it from the provider info."""
        from airflow_provider_flexinsights.get_provider_info import UI_FIELD_BEHAVIOUR

        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields for Airflow < 3.2, which builds them from WTForms fields.

        Made from the provider info's ``conn-fields`` so the two never drift apart. Airflow 3.1's
        API server stands in its own WTForms look-alikes when FAB is not installed.
        """
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, StringField
        from wtforms.validators import Optional

        from airflow_provider_flexinsights.get_provider_info import CONN_FIELDS

        widgets: dict[str, Any] = {}
        for name, field in CONN_FIELDS.items():
            label, description = lazy_gettext(field["label"]), field["description"]
            if "boolean" in field["schema"]["type"]:
                widgets[name] = BooleanField(label, description=description, default=False)
            else:
                widgets[name] = StringField(
                    label, description=description, widget=BS3TextFieldWidget(), validators=[Optional()]
                )
        return widgets


class AsyncFlexInsightsClient:
    """A Flex Insights session for the event loop. Use it through :meth:`FlexInsightsAsyncHook.session`."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.session = Session(settings.credentials)
        self._api = FlexInsightsApi(self.session, settings.base_url)
        self._transport = AsyncTransport(settings.base_url, on_secret=_amask_secret)

    async def check_export(self, export_uri: str) -> ExportStatus:
        """Poll once, without reading a CSV body."""
        return await self._transport.run(self._api.check_export(export_uri, "discard"))

    async def wait_for_export(
        self, export_uri: str, *, schedule: PollSchedule, deadline: float
    ) -> ExportStatus:
        """Poll until ready or empty, never reading the CSV body (that is the worker's job)."""
        flow = self._api.wait_for_export(
            export_uri, schedule=schedule, deadline=deadline, success_body="discard"
        )
        return await self._transport.run(flow)

    async def close(self) -> None:
        try:
            await self._transport.run(self.session.log_out())
        finally:
            await self._transport.close()


@dataclass
class _SharedSession:
    client: AsyncFlexInsightsClient
    users: int = 0


class _SharedSessions:
    """One logged-in client per connection on one event loop, kept while anyone uses it.

    A triggerer runs every trigger on one loop: sharing the session means one login, one TT and
    two masked secrets per connection instead of per trigger, and a single token renewal for all
    (the session's renewal is single-flight). The lock makes the connection lookup single-flight.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _SharedSession] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, conn_id: str, hook: FlexInsightsAsyncHook) -> _SharedSession:
        async with self._lock:
            shared = self._sessions.get(conn_id)
            if shared is None:
                shared = self._sessions[conn_id] = _SharedSession(
                    AsyncFlexInsightsClient(await hook.get_settings())
                )
            shared.users += 1
            return shared

    async def release(self, conn_id: str, shared: _SharedSession) -> None:
        shared.users -= 1
        if shared.users == 0 and self._sessions.get(conn_id) is shared:
            del self._sessions[conn_id]
            await shared.client.close()  # the last user logs out

    @staticmethod
    def of_running_loop() -> _SharedSessions:
        loop = asyncio.get_running_loop()
        if loop not in _SHARED_SESSIONS:
            _SHARED_SESSIONS[loop] = _SharedSessions()
        return _SHARED_SESSIONS[loop]


_SHARED_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedSessions] = (
    weakref.WeakKeyDictionary()
)


class FlexInsightsAsyncHook(BaseHook):
    """The async counterpart of :class:`FlexInsightsHook`, for triggers.

    It reads the connection with Airflow's async connection API (a sync lookup inside the
    triggerer's event loop deadlocks), and shares one session per connection among all its users
    on the event loop, logging out when the last one is done.
    """

    conn_name_attr = "flex_insights_conn_id"
    default_conn_name = "flex_insights_default"
    conn_type = "flex_insights"
    hook_name = "Flex Insights (async)"

    def __init__(self, flex_insights_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.flex_insights_conn_id = flex_insights_conn_id

    async def get_settings(self) -> ConnectionSettings:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.flex_insights_conn_id, hook=self)
        return _settings(self.flex_insights_conn_id, conn, await get_async_extra_dejson(conn))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncFlexInsightsClient]:
        """The event loop's shared session for this connection; logged out after its last user."""
        sessions = _SharedSessions.of_running_loop()
        shared = await sessions.acquire(self.flex_insights_conn_id, self)
        try:
            yield shared.client
        finally:
            await sessions.release(self.flex_insights_conn_id, shared)
