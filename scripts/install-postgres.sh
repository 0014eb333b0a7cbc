#!/usr/bin/env bash
# PostgreSQL for the tests that load into a real database and run Airflow on a PostgreSQL metadata
# database (tests/postgres_server.py starts throwaway clusters with initdb + pg_ctl; no service).
# Idempotent: does nothing when initdb is found. Installs Debian's postgresql with apt-get when run
# as root (the package also creates the OS user `postgres` that owns the clusters); otherwise says
# what to install and fails.
set -euo pipefail

have_initdb() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if have_initdb && id postgres >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing PostgreSQL (apt-get install postgresql) for the database tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends postgresql >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends postgresql >&2; }
fi
if ! have_initdb || ! id postgres >/dev/null 2>&1; then
  echo "The database tests need PostgreSQL's server programs (initdb, pg_ctl): e.g. sudo apt-get install postgresql" >&2
  exit 1
fi
