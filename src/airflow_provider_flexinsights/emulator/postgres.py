"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temporary folder.

Each server is a cluster of its own on a free loopback port with trust authentication, no fsync
and its socket inside its data folder, so nothing of the machine's own PostgreSQL is touched.
PostgreSQL refuses to run as root: run as root (as CI does), the cluster belongs to the OS user
``postgres`` that Debian's ``postgresql`` package creates (``scripts/install-system-packages.sh``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

OS_USER = "postgres"
"""The OS user that owns the cluster when the tests run as root."""

_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # a throwaway cluster: durability buys nothing, speed does
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",  # an Airflow deployment opens many (scheduler, workers, triggerers)
}


def postgres_bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else the newest ``/usr/lib/postgresql/*/bin``."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(installed, key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (no initdb): run scripts/install-system-packages.sh.")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``stop()`` ends it and deletes its folder."""

    folder: Path
    port: int
    bin_dir: Path
    host: str = "127.0.0.1"
    user: str = "postgres"
    _as_os_user: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        """A SQLAlchemy URL, e.g. ``driver="postgresql+psycopg2"`` or ``"postgresql+asyncpg"``."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def psql(
        self, *args: str, database: str = "postgres", stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``psql`` against this server (``-X``, stop on the first error), capturing its output."""
        command = [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=check)

    def query(self, sql: str, database: str = "postgres") -> list[tuple[str, ...]]:
        """Rows of ``sql`` as tuples of text (psql's unaligned output): for assertions in tests."""
        out = self.psql("-A", "-t", "-F", "\t", "-c", sql, database=database).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def create_database(self, name: str) -> None:
        self.psql("-c", f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if self.data_dir.exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self._as_os_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return subprocess.run(command, capture_output=True, text=True, check=check)


def start_postgres(base_dir: Path | None = None, *, attempts: int = 3) -> PostgresServer:
    """Create and start a cluster in a new folder under ``base_dir`` (default: the temp folder).

    ``base_dir`` must be reachable by the ``postgres`` user when run as root: pytest's own
    ``tmp_path`` is not (mode 0700), hence the default.
    """
    as_os_user = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="flexinsights-pg-", dir=base_dir))
    if as_os_user:
        shutil.chown(folder, OS_USER)
    server = PostgresServer(folder, 0, postgres_bin_dir(), _as_os_user=as_os_user)
    try:
        command = [*as_os_user, str(server.bin_dir / "initdb"), "-D", str(server.data_dir)]
        command += ["-U", server.user, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        subprocess.run(command, capture_output=True, text=True, check=True)
        for attempt in range(attempts):  # a free port can be taken between the probe and the start
            server.port = _free_port()
            options = " ".join(f"-c {name}={value}" for name, value in _SETTINGS.items())
            options += f" -p {server.port} -k {server.data_dir}"
            log = str(folder / "log")
            started = server._pg_ctl("start", "-w", "-t", "60", "-o", options, "-l", log, check=False)
            if started.returncode == 0:
                return server
            if attempt == attempts - 1:
                log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
                raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{log[-2000:]}")
    except BaseException:
        server.stop()
        raise
    raise AssertionError("unreachable")
