"""Target 3: an export that is ready at the first poll costs the fewest requests possible.

Runs the real operator twice in one process (`dag.test()`, non-deferrable, throwaway Airflow home)
against an emulator whose exports are ready at once, and counts the requests in the emulator's log:
at most login, TT, identifiers, execute, one GET that streams the body, logout for each export
(lookups are cached by each task's client, docs/wire.md "What is cached", so the second task asks
for its identifier again, once).

    python benchmarks/request_count.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# Airflow reads its home when first imported (the harness imports it): set it up first.
HOME = Path(tempfile.mkdtemp(prefix="flexinsights-bench-home-"))
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(HOME / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
)

from _harness import emulator, verdict  # noqa: E402

DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

with DAG("request_count", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    FlexInsightsExportOperator(
        task_id="export", report_id="3035643", date_from="{{ ds }}", date_to="{{ ds }}",
        destination="{OUT}/{{ ds }}.csv", deferrable=False,
    )
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the same run; figures not judged")
    args = parser.parse_args()
    home = HOME
    (home / "dags").mkdir()
    (home / "dags" / "request_count.py").write_text(textwrap.dedent(DAG).replace("{OUT}", str(home / "out")))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    with emulator("--pending-polls", "0") as running:
        os.environ["AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"] = running.connection_json()
        dag = DagBag(dag_folder=str(home / "dags")).get_dag("request_count")
        counts = []
        for day in ("2024-03-01", "2024-03-02"):
            before = len(running.requests_log())
            dag.test(logical_date=pendulum.parse(day))
            counts.append([f"{r['endpoint']}:{r['status']}" for r in running.requests_log()[before:]])
        written = sorted(p.name for p in (home / "out").iterdir())

    print(f"files written: {written}")
    for n, calls in enumerate(counts, start=1):
        print(f"export {n}: {len(calls)} requests: {', '.join(calls)}")
    minimal = ["login:200", "token:200", "identifiers:200", "execute:201", "export:200", "logout:204"]
    checks = {
        "first<=6": counts[0] == minimal,
        "second<=6": counts[1] == minimal,
        "two_files": written == ["2024-03-01.csv", "2024-03-02.csv"],
    }
    return verdict(checks, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
