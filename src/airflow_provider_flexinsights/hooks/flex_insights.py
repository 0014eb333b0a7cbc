"""Hooks: an Airflow connection in, a logged-in Flex Insights client out, logged out afterwards.

A hook is Airflow glue only: connection -> validated settings -> client (:mod:`..library.client`), with
Airflow's secret masker injected, plus ``test_connection`` and the connection form.
:class:`FlexInsightsHook` serves workers (blocking ``requests``); :class:`FlexInsightsAsyncHook`
serves triggers (``aiohttp`` on the event loop, connection read with Airflow's async API).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.backoff import RetryPolicy
from airflow_provider_flexinsights.library.client import (
    AsyncFlexInsightsClient,
    FlexInsightsClient,
    SharedSessions,
)
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsConnectionNotFoundError,
    FlexInsightsError,
)
from airflow_provider_flexinsights.library.validation import ConnectionSettings

__all__ = ["AsyncFlexInsightsClient", "FlexInsightsAsyncHook", "FlexInsightsClient", "FlexInsightsHook"]


@contextmanager
def _defined(conn_id: str) -> Iterator[None]:
    """Airflow's "connection not found" as our one sentence, marked as not worth a retry."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    try:
        yield
    except AirflowNotFoundException:
        raise FlexInsightsConnectionNotFoundError(
            f"The Flex Insights connection {conn_id!r} is not defined: add it in Admin > Connections "
            f"or set AIRFLOW_CONN_{conn_id.upper()}."
        ) from None


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
        with _defined(self.flex_insights_conn_id):
            conn = self.get_connection(self.flex_insights_conn_id)
        return _settings(self.flex_insights_conn_id, conn, conn.extra_dejson, where)

    @contextmanager
    def session(self) -> Iterator[FlexInsightsClient]:
        """A client that logs in on first use and logs out when the block ends, even on error."""
        client = FlexInsightsClient(self.settings, self.retry_policy, on_secret=_mask_secret)
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

        with _defined(self.flex_insights_conn_id):
            conn = await get_async_connection(self.flex_insights_conn_id, hook=self)
        return _settings(self.flex_insights_conn_id, conn, await get_async_extra_dejson(conn))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncFlexInsightsClient]:
        """The event loop's shared session for this connection; logged out after its last user."""
        sessions = SharedSessions.of_running_loop()
        shared = await sessions.acquire(self.flex_insights_conn_id, self.get_settings, _amask_secret)
        try:
            yield shared.client
        finally:
            await sessions.release(self.flex_insights_conn_id, shared)
