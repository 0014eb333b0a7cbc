"""OpenLineage for an export: the Flex Insights report in, the written file out.

Imported only when OpenLineage asks (``get_openlineage_facets_on_complete``), so the
``apache-airflow-providers-openlineage`` package stays optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import attr
from airflow.providers.common.compat.openlineage.facet import (
    DatasetFacet,
    DocumentationDatasetFacet,
    InputDataset,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage

NAMESPACE_SCHEME = "flexinsights"


@attr.define
class FlexInsightsExportDatasetFacet(DatasetFacet):
    """What slice of the report was exported: its workspace, id, days and filters (camelCase, as
    OpenLineage facets are)."""

    workspaceId: str
    reportId: str
    dateFrom: str | None
    dateTo: str | None
    filters: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return "https://github.com/airflow-provider-flexinsights/schemas/FlexInsightsExportDatasetFacet.json"


def export_lineage(result: dict[str, Any], base_url: str) -> OperatorLineage[Any, Any]:
    """Lineage of one finished export, from the operator's XCom result."""
    return OperatorLineage(inputs=[report_dataset(result, base_url)], outputs=[file_dataset(result)])


def report_dataset(result: dict[str, Any], base_url: str) -> InputDataset:
    """The report as a dataset: namespace ``flexinsights://<host>``, name ``<workspace>/<report>``."""
    workspace, report = result["workspace_id"], result["report_id"]
    date_from, date_to = result.get("date_from"), result.get("date_to")
    days = f" for {date_from}..{date_to}" if date_from and date_to else ""
    return InputDataset(
        namespace=f"{NAMESPACE_SCHEME}://{urlsplit(base_url).netloc}",
        name=f"{workspace}/{report}",
        facets={
            "documentation": DocumentationDatasetFacet(
                description=f"Flex Insights report {report} in workspace {workspace}{days}"
            ),
            "flexInsightsExport": FlexInsightsExportDatasetFacet(
                workspaceId=workspace,
                reportId=report,
                dateFrom=date_from,
                dateTo=date_to,
                filters=list(result.get("filters", [])),
            ),
        },
    )


def file_dataset(result: dict[str, Any]) -> OutputDataset:
    """The written file, named as OpenLineage names files and objects (``file`` + path, or
    ``s3://bucket`` + key)."""
    namespace, name = dataset_address(result["path"])
    return OutputDataset(
        namespace=namespace,
        name=name,
        outputFacets={
            "outputStatistics": OutputStatisticsOutputDatasetFacet(size=result["bytes"], fileCount=1)
        },
    )


def dataset_address(path: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) for a local path or an object storage URI.

    A connection id in the URI (``s3://aws_conn@bucket/key``) is Airflow's, not part of the
    object's address, so it is dropped.
    """
    parts = urlsplit(path)
    if parts.scheme in ("", "file"):
        return "file", parts.path
    return f"{parts.scheme}://{parts.hostname}", parts.path.lstrip("/")


def table_lineage(
    result: dict[str, Any], base_url: str, hook: Any, columns: list[Any] | None = None
) -> OperatorLineage[Any, Any]:
    """Lineage of one load: the report in; the table out, named as OpenLineage names the hook's
    database (``postgres://host:port`` + ``database.schema.table``), with a schema facet, the rows
    written, and each table column's report column (column lineage). The columns are the load's
    result's own (``columns``: CSV name -> table column, ``column_types``) unless given."""
    from airflow.providers.common.compat.openlineage.facet import (
        ColumnLineageDatasetFacet,
        Fields,
        InputField,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    if columns is None:
        types = result["column_types"]
        columns = [_Loaded(source, name, types[name]) for source, name in result["columns"].items()]
    report = report_dataset(result, base_url)
    namespace, name = table_address(hook, result["table"])
    facets: dict[str, Any] = {
        "schema": SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=c.name, type=_type_name(c.type)) for c in columns]
        ),
        "columnLineage": ColumnLineageDatasetFacet(
            fields={
                c.name: Fields(
                    inputFields=[InputField(namespace=report.namespace, name=report.name, field=c.source)],
                    transformationType="IDENTITY",
                    transformationDescription="",
                )
                for c in columns
            }
        ),
    }
    output = OutputDataset(
        namespace=namespace,
        name=name,
        facets=facets,
        outputFacets={
            "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=result["rows_inserted"])
        },
    )
    return OperatorLineage(inputs=[report], outputs=[output])


def table_address(hook: Any, table: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a table: the hook's database info where it has one
    (``postgres://host:port``, ``database.schema.table``), else ``<dialect>`` and the table."""
    from airflow.providers.openlineage.sqlparser import SQLParser

    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    info = hook.get_openlineage_database_info(connection)
    if info is None:
        return hook.dialect_name, table
    if "." not in table:
        table = f"{hook.get_openlineage_default_schema() or 'public'}.{table}"
    return SQLParser.create_namespace(info), f"{info.database}.{table}" if info.database else table


@dataclass(frozen=True)
class _Loaded:
    """A table column as the load's result tells it (JSON: the type is its name)."""

    source: str
    name: str
    type: str


def _type_name(column_type: Any) -> str:
    return column_type if isinstance(column_type, str) else str(column_type.value)
