"""One download by the provider that ``sys.path`` finds, run as a child of download_throughput.py.

Arguments: the emulator's URL, the export URI, the destination. The child logs in and exports a
small report (its memory baseline), prints ``ready``, waits for a line on stdin (the parent
settles the machine meanwhile), then times the worker's download path: ``check_export`` (on a
ready export, that GET is the download), ``open_csv`` into ``write_atomically``, hashing as bytes
pass. It prints one JSON line: seconds, CPU seconds, bytes, the SHA-256 it reported, and its peak
RSS growth over the baseline. Only API the benchmarks (``_harness`` included) have used since the
first release is called, so ``--baseline-src`` can put an older checkout first on ``sys.path``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from _harness import cpu_seconds, demo_settings, peak_rss_mb

# 0.2.0's paths (compatibility modules since): --baseline-src runs this against older checkouts
from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsClient
from airflow_provider_flexinsights.storage import write_atomically


def main(url: str, uri: str, destination: str) -> None:
    client = FlexInsightsClient(demo_settings(url))
    with tempfile.TemporaryDirectory() as tmp:  # about 1 MB, through the same path: the baseline
        small = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-25")
        with client.open_csv(client.check_export(small)) as chunks:
            write_atomically(str(Path(tmp) / "small.csv"), chunks)
    baseline_rss = peak_rss_mb()
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, began = cpu_seconds(), time.perf_counter()
    with client.open_csv(client.check_export(uri)) as chunks:
        written = write_atomically(destination, chunks)
    seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    client.close()
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bytes": written.bytes,
        "sha256": written.sha256,
        "rss_growth_mb": peak_rss_mb() - baseline_rss,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
