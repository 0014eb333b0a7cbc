#!/usr/bin/env bash
# curl: the reference client benchmarks/download_throughput.py compares the provider's download with
# (its smoke run is in the test suite). Idempotent: does nothing when curl is found. Installs
# Debian's curl with apt-get when run as root; otherwise says what to install and fails.
set -euo pipefail

command -v curl >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing curl (apt-get install curl) for the download benchmark..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends curl >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends curl >&2; }
fi
command -v curl >/dev/null 2>&1 || { echo "The download benchmark needs curl: e.g. sudo apt-get install curl" >&2; exit 1; }
