"""Backfill a week of the queue report into a table, one partition per day (Airflow 3.2+).

A single task per run: `FlexInsightsToSqlOperator` with no dates, on a daily
`CronPartitionTimetable`, exports its partition's day and replaces that day in `queue_stats` of the
connection `warehouse` (any common.sql database), in one transaction. Backfilling a week makes one
run per day, three at a time (`max_active_runs`), and leaves each day in the table once, however
often it is run:

    airflow backfill create --dag-id flex_insights_partitioned_backfill \\
        --from-date 2024-03-01 --to-date 2024-03-07

Use this shape when only the table is wanted; `flex_insights_partitioned_pipeline.py` also keeps
each day's file and hands the day on through an asset.

Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronPartitionTimetable

from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

with DAG(
    dag_id="flex_insights_partitioned_backfill",
    schedule=CronPartitionTimetable("0 0 * * *", timezone="UTC", run_offset=-1),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    tags=["flex-insights", "example", "partitions"],
    doc_md=__doc__,
):
    FlexInsightsToSqlOperator(
        task_id="load_day",
        report_id="3035643",
        sql_conn_id="warehouse",
        table="queue_stats",
        deferrable=True,
        retries=2,
    )
