"""What every benchmark needs: the emulator in its own process, a client, the emulator's log.

The emulator runs in a separate process so that its CPU time and memory never count as the
provider's, and so that it is measured the same way as `curl` or any other client would see it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

# 0.2.0's paths (compatibility modules since): --baseline-src runs this against older checkouts
from airflow_provider_flexinsights.emulator import DEMO_EMAIL, DEMO_PASSWORD, airflow_connection
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsClient
from airflow_provider_flexinsights.validation import ConnectionSettings, connection_settings


@dataclass
class RunningEmulator:
    url: str
    process: subprocess.Popen[str]

    def requests_log(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = requests.get(f"{self.url}/_emulator/requests", timeout=30).json()
        return records

    def exports(self) -> dict[str, dict[str, float]]:
        document: dict[str, dict[str, float]] = requests.get(
            f"{self.url}/_emulator/exports", timeout=30
        ).json()
        return document

    def settings(self) -> ConnectionSettings:
        return demo_settings(self.url)

    def client(self) -> FlexInsightsClient:
        return FlexInsightsClient(self.settings())

    def connection_json(self) -> str:
        return airflow_connection(self.url)

    def temporary_token(self) -> str:
        """A TT minted by hand, for reference clients such as curl."""
        login = {
            "postUserLogin": {
                "login": DEMO_EMAIL,
                "password": DEMO_PASSWORD,
                "remember": 0,
                "verify_level": 2,
            }
        }
        sst = requests.post(f"{self.url}/gdc/account/login", json=login, timeout=30).json()["userLogin"][
            "token"
        ]
        answer = requests.get(f"{self.url}/gdc/account/token", headers={"X-GDC-AuthSST": sst}, timeout=30)
        token: str = answer.json()["userToken"]["token"]
        return token


def demo_settings(url: str) -> ConnectionSettings:
    """The emulator's demo account at ``url``, as a connection would give it."""
    return connection_settings(
        "benchmark", host=url, port=None, login=DEMO_EMAIL, password=DEMO_PASSWORD, extra={}
    )


@contextmanager
def emulator(*args: str) -> Iterator[RunningEmulator]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_flexinsights.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield RunningEmulator(ready["url"], process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine_line() -> str:
    """What the figures were measured on, and how busy it was (other work skews wall-clock figures)."""
    one, five, _ = os.getloadavg()
    return (
        f"machine: {sys.platform}, {os.cpu_count()} cores, python {sys.version.split()[0]}; "
        f"load average {one:.2f} (1 min), {five:.2f} (5 min)"
    )


class Checks(dict[str, bool]):
    """Targets judged so far; each prints its own summary line as it is judged."""

    def judge(self, name: str, ok: bool, detail: str) -> None:
        """Print ``PASS name: detail`` (or FAIL) and remember the outcome."""
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        self[name] = ok


def verdict(checks: dict[str, bool], *, smoke: bool) -> int:
    """Print one PASS/FAIL line; fail the process only on a full-size run."""
    failed = [name for name, ok in checks.items() if not ok]
    if smoke:
        print(
            "SMOKE (sizes scaled down; targets not judged):", "ok" if not failed else f"would fail {failed}"
        )
        return 0
    print("PASS" if not failed else f"FAIL: {', '.join(failed)}")
    return 1 if failed else 0
