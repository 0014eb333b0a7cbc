"""Run the example DAG against the local emulator, in the demo's own Airflow home, and show the CSV.

Called by scripts/demo.sh once .venv exists. Starts the emulator on a free loopback port, points the
``flex_insights_default`` connection at it through ``AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT``, runs
``airflow dags test flex_insights_daily_export DATE`` (the trigger runs inline), prints where the CSV
landed and its first lines; then loads the same day into a local SQLite database with
``flex_insights_backfill_load`` (FlexInsightsToSqlOperator) and prints offered contacts per queue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from airflow_provider_flexinsights.emulator import Emulator, EmulatorConfig, airflow_connection

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "flex_insights_daily_export"
LOAD_DAG_ID = "flex_insights_backfill_load"


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments fail in one line, before Airflow starts (not argparse's usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"demo: {message} (see ./scripts/demo.sh --help)\n")


def run_date(text: str) -> str:
    """The ``--date`` argument: a real day written YYYY-MM-DD (``airflow dags test`` takes it as is)."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a real date written YYYY-MM-DD") from None


def main() -> int:
    parser = OneLineParser(prog="./scripts/demo.sh", description=__doc__.splitlines()[0])
    today = dt.datetime.now(dt.UTC).date()
    parser.add_argument(
        "--date", type=run_date, default=today.isoformat(), help="logical date; the day before is exported"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output", help="where the CSV files go")
    args = parser.parse_args()

    home = ROOT / ".airflow-demo"
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_VAR_FLEX_INSIGHTS_EXPORT_DIR": str(args.output.resolve()),
    }
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, check=False)
    if migrate.returncode != 0:
        print(migrate.stdout[-4000:], migrate.stderr[-4000:], sep="\n", file=sys.stderr)
        print(f"airflow db migrate failed (exit {migrate.returncode}) in {home}; see above.", file=sys.stderr)
        return 1

    with Emulator(EmulatorConfig(pending_polls=2)) as emulator:  # deferred, then ready 3 s later
        env["AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"] = airflow_connection(emulator.url)
        print(f"Emulator on {emulator.url}; running: airflow dags test {DAG_ID} {args.date}", flush=True)
        command = [airflow, "dags", "test", DAG_ID, args.date]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        calls = emulator.calls()
    # The load gets an emulator whose exports are ready at once: the waiting was shown above.
    with Emulator(EmulatorConfig(pending_polls=0)) as emulator:
        env["AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"] = airflow_connection(emulator.url)
        database = (args.output / "warehouse.db").resolve()
        load = load_into_sqlite(
            airflow, env, database, dt.date.fromisoformat(args.date) - dt.timedelta(days=1)
        )

    log = home / "last-demo-run.log"
    log.write_text(run.stdout + run.stderr)
    exported_day = dt.date.fromisoformat(args.date) - dt.timedelta(days=1)
    csv = args.output / "queue_report" / f"{exported_day.isoformat()}.csv"
    if run.returncode != 0 or not csv.exists():
        print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
        print(f"The DAG run failed (exit {run.returncode}); full log: {log}", file=sys.stderr)
        return 1

    triggerer_polls = sum(1 for endpoint, status in calls if endpoint == "export" and status == 202)
    print(f"Airflow log: {log}")
    print(f"API calls seen by the emulator: {len(calls)} ({triggerer_polls} answered 202 'still computing')")
    print(f"CSV written: {csv} ({csv.stat().st_size:,} bytes, {exported_day})")
    with csv.open(encoding="utf-8") as lines:
        for _, line in zip(range(5), lines, strict=False):
            print("   ", line.rstrip())
    if load.returncode != 0:
        (home / "last-demo-load.log").write_text(load.stdout + load.stderr)
        print(f"The load into SQLite failed; log: {home / 'last-demo-load.log'}", file=sys.stderr)
        return 1
    print_offered_per_queue(database)
    return 0


def load_into_sqlite(
    airflow: str, env: dict[str, str], database: Path, day: dt.date
) -> subprocess.CompletedProcess[str]:
    """``airflow dags test flex_insights_backfill_load DAY``: that day into ``queue_stats`` of SQLite."""
    database.parent.mkdir(parents=True, exist_ok=True)
    env = {**env, "AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(database)})}
    print(f"Loading {day} into SQLite {database}: airflow dags test {LOAD_DAG_ID} {day}", flush=True)
    command = [airflow, "dags", "test", LOAD_DAG_ID, day.isoformat()]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def print_offered_per_queue(database: Path) -> None:
    query = "SELECT queue, SUM(offered_contacts), COUNT(*) FROM queue_stats GROUP BY queue ORDER BY 2 DESC"
    with sqlite3.connect(database) as db:
        rows = db.execute(query).fetchall()
    print(f"SQLite {database}, table queue_stats: {query}")
    print(f"    {'queue':<12}{'offered':>10}{'rows':>8}")
    for queue, offered, count in rows:
        print(f"    {queue:<12}{offered:>10}{count:>8}")


if __name__ == "__main__":
    sys.exit(main())
