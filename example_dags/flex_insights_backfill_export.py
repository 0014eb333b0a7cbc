"""Export each day's queue report from the run's data interval: made for catch-up and backfills.

No dates are given to the operator: each run exports the whole days of its data interval, from
the day of `data_interval_start` to the day before `data_interval_end`. With the daily
`CronDataIntervalTimetable` below, the run for the interval 2024-03-01 -> 2024-03-02 exports
2024-03-01, so a backfill of a month produces one file per day:

    airflow backfill create --dag-id flex_insights_backfill_export \\
        --from-date 2024-03-01 --to-date 2024-03-31
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

# Airflow 3.2+ also offers it as airflow.sdk.CronDataIntervalTimetable; this path works on 3.1 too.
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"

with DAG(
    dag_id="flex_insights_backfill_export",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,  # set True to catch up from start_date on deployment
    max_active_runs=4,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_queue_report",
        report_id="3035643",
        destination=f"{EXPORT_DIR}/backfill/queue_report/{{{{ data_interval_start | ds }}}}.csv",
        deferrable=True,
        retries=2,
    )
