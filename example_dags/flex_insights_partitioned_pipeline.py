"""Partitioned by day, from export to warehouse (Airflow 3.2+): each day's file, then that day's rows.

`flex_insights_partitioned_export` runs on a `CronPartitionTimetable`: the run at midnight has the
key of the day before (`run_offset=-1`), such as `2024-03-01T00:00:00`, and no logical date (so no
`ds`). The operator gets no dates: the partition is the date filter, and since the destination
names no date the file lands in the partition's folder,
`<flex_insights_export_dir>/partitioned/queue_report/date=2024-03-01/queue_report.csv`.

Its outlet event carries the partition key, so `flex_insights_partitioned_load`, scheduled on the
asset by a `PartitionedAssetTimetable`, runs once per partition with the same key and replaces that
day, and only that day, in the table `queue_stats_daily` of the connection `warehouse` (any
common.sql database). The load runs its own export of the day: the event tells it which day is
complete, not where a file is (see docs/partitions.md).

Backfill a week, three days at a time; each day is exported once, then loaded once:

    airflow backfill create --dag-id flex_insights_partitioned_export \\
        --from-date 2024-03-01 --to-date 2024-03-07 --max-active-runs 3

Re-run one day (its file is rewritten, then its rows replaced downstream):

    airflow dags clear flex_insights_partitioned_export --partition-key 2024-03-03T00:00:00 --yes

Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, CronPartitionTimetable, PartitionedAssetTimetable

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator
from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

QUEUE_REPORT_DAYS = Asset(name="flex_insights_queue_report_days")
EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"

with DAG(
    dag_id="flex_insights_partitioned_export",
    schedule=CronPartitionTimetable("0 0 * * *", timezone="UTC", run_offset=-1),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    tags=["flex-insights", "example", "partitions"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_queue_report",
        report_id="3035643",
        destination=f"{EXPORT_DIR}/partitioned/queue_report/queue_report.csv",
        outlets=[QUEUE_REPORT_DAYS],
        deferrable=True,
        retries=2,
    )

with DAG(
    dag_id="flex_insights_partitioned_load",
    schedule=PartitionedAssetTimetable(assets=QUEUE_REPORT_DAYS),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example", "partitions"],
    doc_md=__doc__,
):
    FlexInsightsToSqlOperator(
        task_id="load_queue_report",
        report_id="3035643",
        sql_conn_id="warehouse",
        table="queue_stats_daily",
        deferrable=True,
        retries=2,
    )
