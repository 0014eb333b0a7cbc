"""Target 4: one triggerer event loop holds 1,000 (or 5,000) pending exports cheaply.

Starts N exports (default 1,000) in an emulator whose exports become ready after a random 30 to
120 s, then runs N `FlexInsightsExportTrigger`s concurrently on one event loop, rebuilt from their
serialized form and iterated the way the triggerer does. Prints: events delivered, logins (the
triggers share one session per connection), average CPU of this process (the emulator runs in
its own), peak RSS, and the latency from "ready" to the trigger's event (p50/p99).

    python benchmarks/triggerer_scale.py              # 1,000 triggers, judged: <= 0.05 core
    python benchmarks/triggerer_scale.py --triggers 5000   # judged: <= 0.20 core, <= 300 MB, p99 <= 20 s
    python benchmarks/triggerer_scale.py --smoke      # 20 triggers ready after 1-3 s, not judged
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
import time

from _harness import Checks, cpu_seconds, emulator, machine_line, peak_rss_mb, percentile, verdict

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT
from airflow_provider_flexinsights.triggers.flex_insights import FlexInsightsExportTrigger

# (cores, peak RSS in MB, ready-to-event p99 in s) by number of triggers; counts in between are judged
# by the next larger one
TARGETS = {1000: (0.05, 300, 20.0), 5000: (0.20, 300, 20.0)}


async def run_like_the_triggerer(triggers: list[FlexInsightsExportTrigger]) -> dict[str, tuple[str, float]]:
    """Each trigger is rebuilt from serialize() and iterated in its own task on this one loop."""
    from airflow.sdk.module_loading import import_string

    fired: dict[str, tuple[str, float]] = {}

    async def watch(trigger: FlexInsightsExportTrigger) -> None:
        classpath, kwargs = trigger.serialize()
        async for event in import_string(classpath)(**kwargs).run():
            fired[kwargs["export_uri"]] = (event.payload["status"], time.time())
            return

    await asyncio.gather(*(watch(t) for t in triggers))
    return fired


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--ready-min", type=float, default=30.0)
    parser.add_argument("--ready-max", type=float, default=120.0)
    parser.add_argument("--smoke", action="store_true", help="20 triggers ready after 1-3 s, not judged")
    args = parser.parse_args()
    count, ready_range = (
        (20, ("1", "3")) if args.smoke else (args.triggers, (str(args.ready_min), str(args.ready_max)))
    )
    logging.getLogger("airflow_provider_flexinsights").setLevel(
        logging.WARNING
    )  # one line per trigger is noise here

    with emulator("--pending-polls", "0", "--pending-range", *ready_range) as running:
        os.environ["AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"] = running.connection_json()
        client = running.client()
        first = dt.date(2024, 1, 1)
        uris = [
            client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, day, day)
            for day in ((first + dt.timedelta(days=n)).isoformat() for n in range(count))
        ]
        client.close()
        already = len(running.requests_log())
        triggers = [
            FlexInsightsExportTrigger(
                conn_id="flex_insights_default",
                export_uri=uri,
                workspace_id=DEMO_WORKSPACE,
                report_id=QUEUE_REPORT,
                end_time=time.time() + 3600,
            )
            for uri in uris
        ]
        cpu_before, began = cpu_seconds(), time.monotonic()
        fired = asyncio.run(run_like_the_triggerer(triggers))
        wall, cpu = time.monotonic() - began, cpu_seconds() - cpu_before
        log = running.requests_log()[already:]
        ready_at = {uri: export["ready_at"] for uri, export in running.exports().items()}

    delivered = sum(1 for status, _ in fired.values() if status == "ready")
    logins = sum(1 for r in log if r["endpoint"] == "login" and r["status"] == 200)
    polls = sum(1 for r in log if r["endpoint"] == "export")
    latencies = [fired_at - ready_at[uri] for uri, (_, fired_at) in fired.items()]
    cores, rss = cpu / wall, peak_rss_mb()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    max_cores, max_rss, max_p99 = next(
        t for n, t in sorted(TARGETS.items()) if count <= n or n == max(TARGETS)
    )
    print(f"{count:,} triggers on one event loop, exports ready after {ready_range[0]}-{ready_range[1]} s")
    print(machine_line())
    print(f"status polls: {polls:,} ({polls / count:.1f} per export); CPU {cpu:.1f} s over {wall:.0f} s")
    print(f"ready-to-event: p50 {p50:.2f} s")
    checks = Checks()
    checks.judge("events delivered", delivered == count, f"{delivered:,} of {count:,}")
    checks.judge("logins", logins == 1, f"{logins} (one session shared per connection)")
    checks.judge("CPU", cores <= max_cores, f"{cores:.3f} core on average (target <= {max_cores:.2f})")
    checks.judge("peak RSS", rss <= max_rss, f"{rss:.0f} MB (target <= {max_rss})")
    checks.judge("ready-to-event p99", p99 <= max_p99, f"{p99:.2f} s (target <= {max_p99:.0f})")
    return verdict(checks, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
