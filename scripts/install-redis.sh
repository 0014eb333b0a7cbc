#!/usr/bin/env bash
# Redis for the Celery deployment of the end-to-end tests (the Celery broker of
# tests/e2e/test_distributed.py, started by the tests as `redis-server` on a free loopback port without persistence; no service).
# Idempotent: does nothing when redis-server is found. Installs Debian's redis-server with apt-get
# when run as root (apt-get update first: a fresh image has no package lists); otherwise says what
# to install and fails.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Redis (apt-get install redis-server) for the Celery end-to-end tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y --no-install-recommends redis-server >&2
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "The Celery end-to-end tests need redis-server: e.g. sudo apt-get install redis-server" >&2
  exit 1
fi
