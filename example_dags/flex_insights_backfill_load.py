"""A 7-day backfill into a table: one run per day, each replacing exactly its own day.

Each daily run loads the day of its data interval (no explicit dates; `@daily` runs have a
zero-length interval, so the run of day D loads day D) with `mode="replace_days"`, so backfilling
a week twice leaves each of the seven days in the table once:

    airflow backfill create --dag-id flex_insights_backfill_load \\
        --from-date 2024-02-01 --to-date 2024-02-07

Loads into `queue_stats` of the connection `warehouse` (any common.sql database: SQLite, PostgreSQL...).
Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

with DAG(
    dag_id="flex_insights_backfill_load",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # days in order; replace_days makes any order safe, this keeps logs readable
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsToSqlOperator(
        task_id="load_day",
        report_id="3035643",
        sql_conn_id="warehouse",
        table="queue_stats",
        mode="replace_days",
        deferrable=True,
        retries=2,
    )
