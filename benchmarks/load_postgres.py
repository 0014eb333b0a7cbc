"""Load a large export into PostgreSQL: the provider's loader vs psql's \\copy of the same CSV.

Both load the same bytes into the same (truncated) table of the same throwaway server in the same
run, taking turns: the provider reads the report's layout (report, definition, each label, its
attribute, each unaliased metric: what types the columns by name) and streams the export from the
emulator (a separate process) into ``COPY ... FROM STDIN`` through its loader, both timed; the
reference is ``psql -c "\\copy ... from FILE csv header"`` of that CSV, saved to disk first.
Memory: this process's peak RSS growth from after a 1 MB load to after the big one.

    python benchmarks/load_postgres.py            # 1 GiB (targets: >= 0.8x psql, <= 50 MB RSS growth)
    python benchmarks/load_postgres.py --smoke    # 16 MB, not judged
"""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Checks, emulator, machine_line, median, peak_rss_mb, verdict

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE
from airflow_provider_flexinsights.emulator.model import BULK_REPORT
from airflow_provider_flexinsights.emulator.postgres import start_postgres
from airflow_provider_flexinsights.library.columns import ReportColumnPlan
from airflow_provider_flexinsights.transfers.sql_load import TableLoader

TARGET_RATIO, TARGET_RSS_MB = 0.8, 50.0
TABLE = "bulk_load"


def postgres_hook(url: str) -> Any:
    import os

    os.environ["AIRFLOW_CONN_BENCH_PG"] = url
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id="bench_pg")


def load_with_provider(running: Any, hook: Any, uri: str) -> tuple[float, int]:
    """One load as the operator does it: the layout read through the export's session when the
    header arrives, then the rows streamed into COPY; both timed."""
    client = running.client()
    try:
        status = client.check_export(uri)
        began = time.perf_counter()
        layout = functools.partial(client.report_layout, DEMO_WORKSPACE, BULK_REPORT)
        plan = ReportColumnPlan(layout, logging.getLogger("load_postgres"), f"report {BULK_REPORT}")
        with client.open_csv(status) as chunks:
            result = TableLoader(hook, TABLE, mode="append").load(chunks, plan)
        return time.perf_counter() - began, result.rows_inserted
    finally:
        client.close()


def warm_up(hook: Any) -> float:
    """A 1 MB load (it creates the table with the provider's types); returns the RSS baseline."""
    with emulator("--pending-polls", "0", "--bulk-report-mb", "1") as small:
        client = small.client()
        uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, "2024-01-01", "2024-01-25")
        client.close()
        load_with_provider(small, hook, uri)
    return peak_rss_mb()


def table_columns(hook: Any) -> str:
    sql = "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position"
    return ", ".join(f'"{name}"' for (name,) in hook.get_records(sql, parameters=(TABLE,)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="export size in MB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="16 MB, one round, targets not judged")
    args = parser.parse_args()
    size_mb, rounds = (16, 1) if args.smoke else (args.mb, args.rounds)
    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    work.chmod(0o755)  # psql may run as the postgres OS user (tests/postgres_server.py): it reads the CSV
    server = start_postgres()
    checks = Checks()
    try:
        hook = postgres_hook(f"postgres://{server.user}@{server.host}:{server.port}/postgres")
        with emulator("--pending-polls", "0", "--bulk-report-mb", str(size_mb)) as running:
            client = running.client()
            uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, "2024-01-01", "2024-01-25")
            csv_path = work / "export.csv"
            with client.open_csv(client.check_export(uri)) as chunks, csv_path.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            client.close()
            csv_path.chmod(0o644)
            mib = csv_path.stat().st_size / 2**20

            baseline_rss = warm_up(hook)
            columns = table_columns(hook)
            ours, theirs, rows = [], [], 0
            for round_ in range(rounds):
                for who in ("psql", "provider") if round_ % 2 == 0 else ("provider", "psql"):
                    hook.run(f"TRUNCATE {TABLE}")
                    if who == "psql":
                        began = time.perf_counter()
                        server.psql("-c", f"\\copy {TABLE} ({columns}) from '{csv_path}' csv header")
                        theirs.append(time.perf_counter() - began)
                    else:
                        seconds, rows = load_with_provider(running, hook, uri)
                        ours.append(seconds)
                    count = hook.get_first(f"SELECT count(*) FROM {TABLE}")[0]
                    checks.judge(
                        f"rows after {who} (round {round_ + 1})",
                        count > 0 and (who == "psql" or count == rows),
                        f"{count} rows",
                    )
            growth = peak_rss_mb() - baseline_rss
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = median(theirs) / median(ours)
    print(
        f"{mib:.0f} MiB, {rows} rows: provider {mib / median(ours):.1f} MiB/s, psql \\copy "
        f"{mib / median(theirs):.1f} MiB/s (medians of {rounds})"
    )
    checks.judge("throughput", ratio >= TARGET_RATIO, f"{ratio:.2f}x psql \\copy (target >= {TARGET_RATIO}x)")
    checks.judge(
        "peak RSS growth",
        growth <= TARGET_RSS_MB,
        f"{growth:.1f} MB over a 1 MB load (target <= {TARGET_RSS_MB:.0f} MB)",
    )
    return verdict(checks, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
