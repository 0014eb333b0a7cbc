"""The operators: export one Flex Insights report for a range of days, and write it somewhere.

:class:`BaseFlexInsightsExportOperator` is the Airflow glue every export operator shares:
validate the rendered inputs into an :class:`~..library.export_spec.ExportSpec`, drive the
:class:`~..library.export.ExportJob` (deferring to the trigger while the export computes, resuming from
its event), and publish the result (XCom, outlet asset events, the extra link). A subclass says
where the CSV goes by overriding :meth:`~BaseFlexInsightsExportOperator.write` (and
``validated_destination``); :class:`FlexInsightsExportOperator` writes a file or object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseOperator

from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.backoff import PollSchedule
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsEmptyReportError,
    FlexInsightsError,
    FlexInsightsInputError,
)
from airflow_provider_flexinsights.library.export import ExportEvent, ExportJob, ExportPolicy, JobState
from airflow_provider_flexinsights.library.export_spec import ExportInputs, ExportSpec, export_result
from airflow_provider_flexinsights.links.flex_insights import FlexInsightsReportLink

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_provider_flexinsights.library.client import FlexInsightsClient
    from airflow_provider_flexinsights.library.columns import ColumnPlan

OnEmpty = Literal["succeed", "skip", "fail"]
FileFormat = Literal["csv", "parquet"]

# Airflow's own deferral timeout is a backstop behind the trigger's deadline, which fails with a
# clearer message; the margin lets the trigger's message win.
_DEFERRAL_TIMEOUT_MARGIN = dt.timedelta(minutes=5)


class BaseFlexInsightsExportOperator(BaseOperator):
    """One Flex Insights export, driven from Airflow; subclasses say where its CSV goes.

    The export is started in the worker. If it is not ready at the first poll, a deferrable
    operator hands the waiting to :class:`~..triggers.flex_insights.FlexInsightsExportTrigger` and
    frees its worker slot; otherwise it polls in the worker on the same schedule. The CSV is then
    handed to :meth:`write`, whole or not at all. Errors a retry cannot fix fail the task at once.

    The parameters shared by every export operator are those of
    :class:`FlexInsightsExportOperator` (all but ``destination``).
    """

    template_fields: Sequence[str] = ("report_id", "workspace_id", "date_from", "date_to", "filters")
    ui_color = "#f22f46"
    operator_extra_links = (FlexInsightsReportLink(),)
    # what this run wrote: OpenLineage asks this same instance once execute returns (as for Airflow's
    # own operators); reading it back from XCom would cost a call to the API server
    _export_result: dict[str, Any] | None = None
    _connection_secrets_masked = False  # by the first render_template of a try

    def __init__(
        self,
        *,
        report_id: str | int,
        workspace_id: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        filters: list[dict[str, Any]] | None = None,
        flex_insights_conn_id: str = FlexInsightsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        timeout: dt.timedelta | float = dt.timedelta(hours=2),
        on_empty: OnEmpty = "succeed",
        download_attempts: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_empty not in get_args(OnEmpty):
            raise FlexInsightsInputError(f"on_empty must be 'succeed', 'skip' or 'fail', got {on_empty!r}.")
        if not 0 < poll_interval <= max_poll_interval:
            raise FlexInsightsInputError("poll_interval must be positive and at most max_poll_interval.")
        self.report_id = report_id
        self.workspace_id = workspace_id
        self.date_from = date_from
        self.date_to = date_to
        self.filters = filters
        self.flex_insights_conn_id = flex_insights_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout.total_seconds() if isinstance(timeout, dt.timedelta) else float(timeout)
        self.on_empty = on_empty
        self.download_attempts = max(1, download_attempts)

    # --- what a subclass provides ----------------------------------------------------------------

    def validated_destination(self) -> str:
        """Where the CSV goes, rendered and checked (part of the spec, not of what identifies it)."""
        raise NotImplementedError

    def write(self, spec: ExportSpec, chunks: Iterator[bytes], columns: ColumnPlan) -> Mapping[str, Any]:
        """Consume one download attempt whole, or leave nothing behind; return the result's fields.

        Called once per attempt: a stream that breaks midway raises from ``chunks``, and what this
        attempt took must be discarded before the export is fetched again. ``columns`` names and
        types the CSV's header for a typed writer (the SQL load, Parquet); a CSV writer ignores it.
        """
        raise NotImplementedError

    def column_plan(self, spec: ExportSpec, client: FlexInsightsClient) -> ColumnPlan:
        """Names and types for the CSV header, by name from the report's definition, read through the
        export's own session when a typed writer first calls it, once per try (the try's download
        attempts share the plan)."""
        from airflow_provider_flexinsights.library.columns import ReportColumnPlan

        layout = functools.partial(client.report_layout, spec.workspace_id, spec.report_id)
        return ReportColumnPlan(layout, self.log, spec.describe())

    def preflight(self, spec: ExportSpec, context: Context) -> None:
        """Checks after validation, before any Flex Insights request (none by default)."""

    # --- the shared workflow -----------------------------------------------------------------

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render as Airflow does, then register the secrets the result holds with Airflow's secret
        masker, which redacts the rendered fields before the task sends them to be stored (the UI's
        "Rendered Template"); validation refuses such values only later, in ``execute``.

        The secrets: the password of any ``scheme://user:password@host`` (a credentialed
        destination, a URI in a filter value), and the connection's password (Airflow masks it
        once the connection is read, so it is read here, before the fields are sent).
        """
        if not self._connection_secrets_masked:
            self._connection_secrets_masked = True
            with contextlib.suppress(FlexInsightsError):  # reported in one sentence by execute
                self.hook.settings  # noqa: B018  # reading the connection masks its password
        rendered = super().render_template(content, context, jinja_env, seen_oids)
        if isinstance(content, str):  # a template's result; collections recurse to their strings
            _mask_uri_secrets(rendered)
        return rendered

    @cached_property
    def hook(self) -> FlexInsightsHook:
        """The hook of ``flex_insights_conn_id``."""
        return FlexInsightsHook(self.flex_insights_conn_id)

    @property
    def poll_schedule(self) -> PollSchedule:
        """The waits between polls, in the worker and in the trigger alike."""
        return PollSchedule(first=self.poll_interval, cap=self.max_poll_interval)

    @property
    def export_policy(self) -> ExportPolicy:
        return ExportPolicy(self.poll_schedule, download_attempts=self.download_attempts)

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, start (or reuse) the export, wait (deferring if allowed), write; return the result."""
        with _no_retry_for_permanent_errors():
            spec = self.export_spec(context)
            self.preflight(spec, context)
            self._persist_report_link(spec, context)
            return self._run(spec, context, lambda job: JobState.start(time.time() + self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: fail on its error, replace an expired export, else download.

        The parameters are rendered again from the same run, so they equal those of the export.
        """
        with _no_retry_for_permanent_errors():
            spec = self.export_spec(context)
            self._persist_report_link(spec, context)  # this process's operator has not seen it yet
            return self._run(spec, context, ExportEvent.from_payload(event).resume_state)

    def _persist_report_link(self, spec: ExportSpec, context: Context) -> None:
        FlexInsightsReportLink.persist(
            context, self, self.hook.settings.base_url, spec.workspace_id, spec.report_id
        )

    def export_spec(self, context: Context) -> ExportSpec:
        """The rendered, validated parameters; raises FlexInsightsInputError before any request.

        Without dates or a date filter, the days are the run's partition (Airflow 3.2+: a
        partitioned run has a key and no data interval), else the whole days of its data interval.
        """
        partition: list[validation.PartitionDays] = []  # the run's partition, when it gave the days

        def default_days() -> tuple[str, str]:
            key = context.get("partition_key")
            if not key:
                start, end = context.get("data_interval_start"), context.get("data_interval_end")
                return validation.dates_from_data_interval(start, end)
            partition.append(validation.partition_days(key))
            return partition[0].date_from, partition[0].date_to

        inputs = ExportInputs.parse(
            report_id=self.report_id,
            destination=self.validated_destination(),
            date_from=self.date_from,
            date_to=self.date_to,
            filters=self.filters,
            default_days=default_days,
        )
        workspace = self.workspace_id or self.hook.settings.workspace_id
        if workspace is None:
            raise FlexInsightsInputError(
                "No workspace_id: pass workspace_id to the operator or set the extra workspace_id "
                f"of connection {self.flex_insights_conn_id!r}."
            )
        spec = inputs.spec(validation.workspace_id(workspace))
        return self.for_partition(spec, partition[0]) if partition else spec

    def for_partition(self, spec: ExportSpec, partition: validation.PartitionDays) -> ExportSpec:
        """The spec of a run whose partition gave the days (where its output goes may depend on it)."""
        return spec

    def _run(
        self, spec: ExportSpec, context: Context, first_state: Callable[[ExportJob], JobState]
    ) -> dict[str, Any]:
        with self.hook.session() as client:
            memory = context.get("task_state_store")  # Airflow 3.3+: lets a retry reuse the export
            job = ExportJob(
                client,
                spec,
                self.export_policy,
                log=self.log,
                memory=memory,
                memory_scope=self._round(context),
            )
            outcome = job.run(
                functools.partial(self.write, spec, columns=self.column_plan(spec, client)),
                first_state(job),
                on_pending=functools.partial(self._defer, spec) if self.deferrable else None,
                on_empty=functools.partial(self._check_empty_allowed, spec),
            )
        result = export_result(spec, outcome.export_uri, outcome.written, empty=outcome.empty)
        return self._published(result, context)

    def _round(self, context: Context) -> int:
        """The first try number of the task's current round of retries, as Airflow reckons it.

        The task state store survives a clear (apache/airflow#72100), but a clear raises the task
        instance's ``max_tries`` to its ``try_number + retries``, so a cleared task is in a new round
        and starts a new export, while its retries share the round's export.
        """
        return context["ti"].max_tries - (self.retries or 0) + 1

    def _defer(self, spec: ExportSpec, state: JobState) -> None:
        from airflow_provider_flexinsights.triggers.flex_insights import FlexInsightsExportTrigger

        self.log.info("Export not ready yet; deferring to the triggerer (no worker slot held meanwhile).")
        self.defer(
            trigger=FlexInsightsExportTrigger(
                conn_id=self.flex_insights_conn_id,
                export_uri=state.export_uri,
                workspace_id=spec.workspace_id,
                report_id=spec.report_id,
                end_time=state.deadline,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                polls=state.polls,
                restarts=state.replacements,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout) + _DEFERRAL_TIMEOUT_MARGIN,
        )

    def _check_empty_allowed(self, spec: ExportSpec) -> None:
        message = f"Flex Insights has no data for {spec.describe()}"
        if self.on_empty == "skip":
            from airflow.providers.common.compat.sdk import AirflowSkipException

            raise AirflowSkipException(f"{message}; skipping as on_empty='skip'.")
        if self.on_empty == "fail":
            raise FlexInsightsEmptyReportError(
                f"{message}. Check the date range, or set on_empty='succeed' to accept empty exports."
            )
        self.log.info("%s; writing an empty file.", message)

    def _published(self, result: dict[str, Any], context: Context) -> dict[str, Any]:
        """Tell the rest of Airflow about the result: each outlet ``Asset``'s event carries it (so a
        DAG scheduled on it knows which data and days are fresh; in a partitioned run it names the
        partition too), and OpenLineage reads it when the task completes."""
        from airflow.sdk import Asset

        if key := context.get("partition_key"):  # Airflow 3.2+; it also stamps the events with it
            result = {**result, "partition_key": key}
        self._export_result = result
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(result)
        return result


class FlexInsightsExportOperator(BaseFlexInsightsExportOperator):
    """Export a Flex Insights report for a range of days as CSV, to a local path or object storage.

    The export is started in the worker. If it is not ready at the first poll, a deferrable
    operator hands the waiting to :class:`~..triggers.flex_insights.FlexInsightsExportTrigger` and
    frees its worker slot; otherwise it polls in the worker on the same schedule. The CSV is then
    streamed to ``destination`` whole or not at all: through a temporary file renamed into place
    on local disks, as an upload committed only once complete on object stores. Returns (to XCom)
    ``path``, ``bytes``, ``sha256``, ``export_uri`` and the export's parameters, never the CSV.

    The rest of Airflow sees it too: the "Flex Insights report" extra link opens the report in the
    Analytics Portal; each ``Asset`` in ``outlets`` gets an event whose ``extra`` is that same
    result, so a DAG scheduled on the asset knows which file and days are fresh; and with the
    OpenLineage provider installed, the report (namespace ``flexinsights://<host>``) is the input
    and the written file or object the output.

    :param report_id: numeric report id, from the report's URL (``.../obj/3035643``). Templated.
    :param destination: local path or object storage URI (``file://``, ``s3://``, ``gs://``...);
        missing parent folders are created. Templated. When a partition gives the days and the
        destination does not name it, the partition's folder goes before the file name
        (``.../date=2024-03-01/name.csv``; docs/partitions.md).
    :param workspace_id: 32-character workspace id; defaults to the connection's extra
        ``workspace_id``. Templated.
    :param date_from: first day, ``YYYY-MM-DD``, inclusive. Templated. Defaults to the day of the
        run's ``data_interval_start``, or in a partitioned run (Airflow 3.2+) the partition's first
        day (a day, ISO week or month key; any other key is refused).
    :param date_to: last day, ``YYYY-MM-DD``, inclusive. Templated. Defaults to the day before
        ``data_interval_end`` (the end is exclusive), or the start's day for a zero-length interval;
        in a partitioned run, the partition's last day.
    :param filters: more filters, as plain dicts: ``{"type": "floating", "from": -7, "to": -1}``
        (days relative to the workspace's today; replaces the default interval, and excludes
        ``date_from``/``date_to``), ``{"type": "interval", "from": ..., "to": ...}``, and
        ``{"identifier": "label.conversations.queue", "in": ["Sales"]}`` (or ``"not_in"``; values
        as reports show them). Templated; checked after rendering, before any request.
    :param flex_insights_conn_id: the ``flex_insights`` connection.
    :param deferrable: wait in the triggerer instead of the worker. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: seconds before the first re-poll; doubles after each poll.
    :param max_poll_interval: the longest wait between two polls, in seconds.
    :param timeout: how long to wait for the export to be ready before failing.
    :param on_empty: what a report with no data for the range does: ``"succeed"`` (write an
        empty file), ``"skip"`` (skip the task, write nothing) or ``"fail"``.
    :param download_attempts: how many times a CSV stream that breaks midway is fetched again
        from the start before the task fails (nothing is written meanwhile).
    :param format: ``"csv"`` (the export as is) or ``"parquet"`` (typed columns as the SQL load
        names and types them, streamed in row groups; needs the ``parquet`` extra). Default: Parquet
        when ``destination`` ends ``.parquet``, else CSV.
    """

    template_fields: Sequence[str] = (
        "report_id",
        "workspace_id",
        "date_from",
        "date_to",
        "destination",
        "filters",
    )

    def __init__(self, *, destination: str, format: FileFormat | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if format is not None and format not in get_args(FileFormat):
            raise FlexInsightsInputError(f"format must be 'csv' or 'parquet', got {format!r}.")
        self.destination = destination
        self.format = format

    def file_format(self, destination: str) -> FileFormat:
        """``format`` when given, else Parquet for a destination ending ``.parquet``, else CSV."""
        if self.format is not None:
            return self.format
        return "parquet" if destination.lower().endswith(".parquet") else "csv"

    def validated_destination(self) -> str:
        """The rendered ``destination``: a file path or object storage URI, without credentials."""
        return validation.destination(self.destination)

    def for_partition(self, spec: ExportSpec, partition: validation.PartitionDays) -> ExportSpec:
        """A destination that does not name the partition gets its folder (``.../date=2024-03-01/
        name.csv``): otherwise every partition's run would overwrite the same file."""
        return dataclasses.replace(spec, destination=partition.path_for(spec.destination))

    def preflight(self, spec: ExportSpec, context: Context) -> None:
        """Fail before the export if the destination cannot be written (no folder, no permission,
        no bucket): the export would run, download, and then fail at the write."""
        from airflow_provider_flexinsights.library.storage import check_writable

        check_writable(spec.destination)

    def write(self, spec: ExportSpec, chunks: Iterator[bytes], columns: ColumnPlan) -> Mapping[str, Any]:
        """Stream the CSV to ``destination`` atomically: temporary file and rename, or a deferred upload."""
        from airflow_provider_flexinsights.library.storage import write_atomically

        if self.file_format(spec.destination) == "parquet":
            from airflow_provider_flexinsights.library.parquet import parquet_chunks

            chunks = parquet_chunks(chunks, columns)
        written = write_atomically(spec.destination, chunks)
        self.log.info(
            "Wrote %s bytes (sha256 %s) of %s to %s.",
            written.bytes,
            written.sha256,
            spec.describe(),
            written.path,
        )
        return asdict(written)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the report (``flexinsights://<host>``, ``<workspace>/<report>``, with the
        days and filters) in, the written file or object out. None when nothing was written."""
        if self._export_result is None:
            return None
        from airflow_provider_flexinsights.operators.lineage import export_lineage

        return export_lineage(self._export_result, self.hook.settings.base_url)


def _mask_uri_secrets(value: Any) -> None:
    """Tell Airflow's secret masker the password of every ``scheme://user:password@`` in ``value``
    (a string, or the lists and dicts a native template renders)."""
    if isinstance(value, str):
        secrets = [secret for _, secret in validation.uri_secrets(value) if secret]
        if secrets:
            from airflow.sdk.log import mask_secret

            for secret in secrets:
                mask_secret(secret)
    elif isinstance(value, Mapping):
        for item in value.values():
            _mask_uri_secrets(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            _mask_uri_secrets(item)


@contextlib.contextmanager
def _no_retry_for_permanent_errors() -> Iterator[None]:
    """Turn errors a task retry cannot fix (bad password, unknown report...) into AirflowFailException.

    The message stays the same one sentence; only Airflow's retries are skipped.
    """
    try:
        yield
    except FlexInsightsError as err:
        if err.retryable:
            raise
        from airflow.providers.common.compat.sdk import AirflowFailException

        raise AirflowFailException(str(err)) from err
