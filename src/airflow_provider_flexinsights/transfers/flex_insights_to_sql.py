"""The transfer: one Flex Insights export, loaded into a table of any common.sql database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_flexinsights.library.columns import ColumnPlan
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.library.export_spec import ExportSpec
from airflow_provider_flexinsights.operators.flex_insights import BaseFlexInsightsExportOperator
from airflow_provider_flexinsights.transfers.sql_load import MODES, Mode, TableLoader

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Context


class FlexInsightsToSqlOperator(BaseFlexInsightsExportOperator):
    """Export a Flex Insights report for a range of days and load it into a database table.

    The Flex Insights side is :class:`~..operators.flex_insights.FlexInsightsExportOperator`'s own
    (same parameters, validation, default days, deferral, retries of broken downloads). The CSV
    then streams into ``table`` in ONE transaction: the table is created when missing, a column new
    in the report is added, the replaced rows are deleted and the export inserted (PostgreSQL:
    ``COPY``; others: batched inserts). Any failure rolls back: the table is exactly as before.

    Columns are named from the CSV header in snake_case and typed from the report's definition
    (metrics ``NUMERIC``, the date ``DATE``, other attributes ``TEXT``; see docs/warehouse.md).
    Returns (XCom) ``table``, ``mode``, ``rows_inserted``, ``rows_deleted``, ``columns`` (CSV name
    -> column), ``column_types`` and the export's identity (``export_uri``, days, filters).

    :param sql_conn_id: any Airflow SQL connection whose hook is a common.sql ``DbApiHook``
        (PostgreSQL, SQLite, MySQL...).
    :param table: the table to load; created when missing. Templated.
    :param schema: its schema (database default when None). Templated.
    :param mode: ``replace_days`` (default: delete the exported days' rows, then insert; reruns
        and backfills never duplicate; in a partitioned run, the partition's days), ``append``, or
        ``replace`` (the whole table; refused in a partitioned run).
    :param batch_rows: rows per ``executemany`` batch on databases without ``COPY``.
    """

    template_fields: Sequence[str] = (
        *BaseFlexInsightsExportOperator.template_fields,
        "sql_conn_id",
        "table",
        "schema",
    )

    def __init__(
        self,
        *,
        sql_conn_id: str,
        table: str,
        schema: str | None = None,
        mode: Mode = "replace_days",
        batch_rows: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise FlexInsightsInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.schema = schema
        self.mode: Mode = mode
        self.batch_rows = batch_rows

    def validated_destination(self) -> str:
        """The rendered table name, checked (a name is data here: it is always quoted)."""
        for what, name in (("table", self.table), ("schema", self.schema)):
            if name is not None and (not isinstance(name, str) or not name.strip() or "\x00" in name):
                raise FlexInsightsInputError(f"The {what} name must be a non-empty string, got {name!r}.")
        return f"{self.schema}.{self.table}" if self.schema else str(self.table)

    @cached_property
    def sql_hook(self) -> DbApiHook:
        """The hook of ``sql_conn_id``; it must be a common.sql ``DbApiHook``."""
        from airflow.providers.common.compat.sdk import BaseHook
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        try:
            hook = BaseHook.get_connection(self.sql_conn_id).get_hook()  # type: ignore[no-untyped-call]
        except Exception as err:
            raise FlexInsightsInputError(
                f"The SQL connection {self.sql_conn_id!r} is not usable: {err}".rstrip(".") + "."
            ) from err
        if not isinstance(hook, DbApiHook):
            raise FlexInsightsInputError(
                f"Connection {self.sql_conn_id!r} has a {type(hook).__name__}, not a SQL hook (DbApiHook)."
            )
        return hook

    def preflight(self, spec: ExportSpec, context: Context) -> None:
        """Before any Flex Insights request: the SQL connection resolves and the mode fits the days
        (and the run: a partition's run must not empty the other partitions' days)."""
        if self.mode == "replace" and context.get("partition_key"):
            raise FlexInsightsInputError(
                "mode 'replace' empties the whole table, so each partition's run would delete the "
                "other partitions' days; use mode 'replace_days' (the default) in a partitioned DAG."
            )
        self.loader(spec)

    def loader(self, spec: ExportSpec) -> TableLoader:
        days = (spec.date_from, spec.date_to) if spec.date_from and spec.date_to else None
        if self.mode == "replace_days" and days is None:
            raise FlexInsightsInputError(
                "mode 'replace_days' needs absolute days (date_from/date_to or an interval filter); "
                "with a floating range use mode 'append' or 'replace'."
            )
        return TableLoader(
            self.sql_hook,
            self.table,
            schema=self.schema,
            mode=self.mode,
            days=days,
            batch_rows=self.batch_rows,
        )

    def write(self, spec: ExportSpec, chunks: Iterator[bytes], columns: ColumnPlan) -> Mapping[str, Any]:
        """One download attempt into the table, in one transaction (rolled back if it breaks)."""
        loader = self.loader(spec)
        result = loader.load(chunks, columns)
        self.log.info(
            "Loaded %s rows of %s into %s (%s; %s rows deleted).",
            result.rows_inserted,
            spec.describe(),
            loader.qualified_name,
            self.mode,
            result.rows_deleted,
        )
        return {
            "table": loader.qualified_name,
            "mode": self.mode,
            "rows_inserted": result.rows_inserted,
            "rows_deleted": result.rows_deleted,
            "columns": {c.source: c.name for c in result.columns},
            "column_types": {c.name: c.type.value for c in result.columns},
            "created_table": result.created_table,
            "added_columns": result.added_columns,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the report in; the table out, named as OpenLineage names the database's
        tables, with its schema, the rows written and each column's report column."""
        if self._export_result is None:
            return None
        from airflow_provider_flexinsights.operators.lineage import table_lineage

        return table_lineage(self._export_result, self.hook.settings.base_url, self.sql_hook)
