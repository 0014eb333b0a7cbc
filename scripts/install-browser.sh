#!/usr/bin/env bash
# Chromium for the browser test of the connection form (tests/e2e/test_connection_form.py):
# Debian's package at /usr/bin/chromium (Playwright is never allowed to download a browser).
# Idempotent: does nothing when /usr/bin/chromium exists. Installs it with apt-get when run as
# root; otherwise says what to install and fails, unless FLEX_INSIGHTS_SKIP_BROWSER=1.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "${FLEX_INSIGHTS_SKIP_BROWSER:-}" = "1" ]; then
  echo "No /usr/bin/chromium; FLEX_INSIGHTS_SKIP_BROWSER=1, so the browser test will be skipped." >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Chromium (apt-get install chromium) for the browser test..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
fi
if [ ! -x /usr/bin/chromium ]; then
  cat >&2 <<'MSG'
The browser test (tests/e2e/test_connection_form.py) needs Chromium at /usr/bin/chromium.
This script installs it only when run as root on a system with apt-get. Install it, e.g.
    sudo apt-get install chromium
or skip the browser test explicitly with FLEX_INSIGHTS_SKIP_BROWSER=1.
MSG
  exit 1
fi
