#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs on a fresh machine.
#
#   bash scripts/test.sh            # every test of the workspace (the crates,
#                                   # the CRM app and the tools), every feature
#   bash scripts/test.sh --test bad_input   # extra arguments go to cargo test
#
# The Redis tests start their own redis-server, the Postgres tests their own
# PostgreSQL (initdb + postgres), on free loopback ports, and the dashboard's
# browser test a headless Chromium; this script installs them from the
# distribution's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing it (Debian package redis-server)..."
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    echo "no apt-get here: install redis-server yourself, or the Redis tests are skipped (and fail under CI=true)." >&2
  fi
fi

# Debian's postgresql package puts initdb and postgres in
# /usr/lib/postgresql/<version>/bin (not on PATH); the tests look there too.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "initdb not found: installing PostgreSQL (Debian package postgresql)..."
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "no apt-get here: install PostgreSQL yourself, or the Postgres tests are skipped (and fail under CI=true)." >&2
  fi
fi

# The dashboard's browser test drives a real headless Chromium.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "chromium not found: installing it (Debian package chromium)..."
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "no apt-get here: install chromium yourself, or the browser test is skipped (and fails under CI=true)." >&2
  fi
fi

# The console's clicking test drives that Chromium through WebDriver.
if ! command -v chromedriver >/dev/null 2>&1; then
  echo "chromedriver not found: installing it (Debian package chromium-driver)..."
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium-driver >/dev/null
  else
    echo "no apt-get here: install chromedriver yourself, or the clicking test is skipped (and fails under CI=true)." >&2
  fi
fi

cargo test --workspace --all-features "$@"
