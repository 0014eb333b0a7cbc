"""``[core] hostname_callable`` for the distributed deployment: each process's host name from its
environment (``E2E_HOSTNAME``). Two Celery workers or two triggerers on one machine would otherwise
report the same host, and a test could not tell which one ran a task or held a trigger."""

from __future__ import annotations

import os
import socket


def from_environment() -> str:
    return os.environ.get("E2E_HOSTNAME") or socket.getfqdn()
