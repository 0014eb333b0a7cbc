"""Data-aware scheduling: a downstream DAG runs whenever a fresh queue report has been exported.

The export task declares the asset `flex_insights_queue_report` as its outlet. Each successful
export records an asset event whose `extra` is the task's result: the file's `path`, `bytes`,
`sha256`, the `date_from`/`date_to` it covers, the workspace and report ids. The consumer DAG is
scheduled on that asset and reads the exact file from its triggering event, so it never has to
guess a path or a date.

Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import csv
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, ObjectStoragePath, task

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

QUEUE_REPORT_EXPORTS = Asset(name="flex_insights_queue_report")
PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"
EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"

with DAG(
    dag_id="flex_insights_asset_producer",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_queue_report",
        report_id="3035643",
        date_from=PREVIOUS_DAY,
        date_to=PREVIOUS_DAY,
        destination=f"{EXPORT_DIR}/assets/queue_report/{PREVIOUS_DAY}.csv",
        outlets=[QUEUE_REPORT_EXPORTS],
        deferrable=True,
    )

with DAG(
    dag_id="flex_insights_asset_consumer",
    schedule=[QUEUE_REPORT_EXPORTS],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):

    @task
    def summarize_fresh_exports(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One line per exported file: its days and its number of data rows."""
        summaries = []
        for event in triggering_asset_events[QUEUE_REPORT_EXPORTS]:
            export = event.extra
            with ObjectStoragePath(export["path"]).open("r", newline="") as csv_file:
                data_rows = sum(1 for _ in csv.reader(csv_file)) - 1 if export["bytes"] else 0
            summaries.append(
                {"date_from": export["date_from"], "date_to": export["date_to"], "rows": data_rows}
            )
        return summaries

    summarize_fresh_exports()
