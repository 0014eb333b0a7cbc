"""DAGs of the distributed proofs (tests/e2e/test_distributed.py): the destinations' folder comes
from the run's conf, so each test writes where it looks."""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

FIRST_DAY = dt.date(2024, 2, 1)
ITEMS = 20
FOLDER = "{{ dag_run.conf['folder'] }}"


def item(day: dt.date) -> dict[str, str]:
    """One export of one day: its own dates, so the emulator tells each item's exports apart."""
    return {"date_from": day.isoformat(), "date_to": day.isoformat(), "destination": f"{FOLDER}/{day}.csv"}


with DAG(
    dag_id="e2e_twenty_exports",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=ITEMS,
):
    FlexInsightsExportOperator.partial(task_id="export", report_id="3035643", deferrable=True).expand_kwargs(
        [item(FIRST_DAY + dt.timedelta(days=n)) for n in range(ITEMS)]
    )

with DAG(
    dag_id="e2e_export_retried",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    FlexInsightsExportOperator(
        task_id="export",
        report_id="3035643",
        date_from="{{ dag_run.conf['date_from'] }}",
        date_to="{{ dag_run.conf['date_to'] }}",
        destination="{{ dag_run.conf['destination'] }}",
        deferrable=True,
        retries=1,
        retry_delay=dt.timedelta(seconds=1),
    )
