#!/usr/bin/env bash
# The Debian packages the test suite runs for real, installed in one apt-get call:
#   chromium    /usr/bin/chromium for the connection form's browser test (tests/e2e/test_connection_form.py;
#               Playwright is never allowed to download a browser)
#   postgresql  initdb + pg_ctl for the throwaway clusters of emulator/postgres.py (the package
#               also creates the OS user `postgres` that owns them; no service is started)
#   redis-server  the Celery broker of tests/e2e/test_distributed.py (started by the tests on a free
#               loopback port without persistence)
#   curl        the reference client of benchmarks/download_throughput.py (its smoke run is a test)
# Idempotent: installs only what is missing. Needs root and apt-get; otherwise says what to install
# and fails. FLEX_INSIGHTS_SKIP_BROWSER=1 leaves Chromium out (the browser test is then skipped).
set -euo pipefail

have_initdb() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_browser() { [ -x /usr/bin/chromium ] || [ "${FLEX_INSIGHTS_SKIP_BROWSER:-}" = "1" ]; }

missing() {
  have_browser || echo chromium
  { have_initdb && id postgres >/dev/null 2>&1; } || echo postgresql
  command -v redis-server >/dev/null 2>&1 || echo redis-server
  command -v curl >/dev/null 2>&1 || echo curl
}

packages=$(missing | xargs)
[ -z "$packages" ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages for the tests: $packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086  # one word per package
  apt-get install -y --no-install-recommends $packages >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends $packages >&2; }
fi
packages=$(missing | xargs)
if [ -n "$packages" ]; then
  echo "The test suite needs these Debian packages: $packages (e.g. sudo apt-get install $packages;" \
    "FLEX_INSIGHTS_SKIP_BROWSER=1 skips the browser test instead of installing chromium)." >&2
  exit 1
fi
