#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the wasm32-wasip2 target, builds the plugins,
# installs Debian's Chromium and playwright-core (for the console's browser test), starts a
# throwaway PostgreSQL server (installed from Debian's packages if missing; removed after), then
# runs the unit, doc and end-to-end tests (which start the real hookhost binary). The PostgreSQL
# tests use the server given by HOOKHOST_TEST_PG_URL when it is already set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
bash scripts/build-script-plugins.sh
# The console's browser test: Debian's Chromium, and playwright-core pinned in tests/console.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the console test needs Chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
# The charting library the console embeds is exactly the pinned npm version.
bash scripts/vendor-console.sh --check
if [ -z "${HOOKHOST_TEST_PG_URL:-}" ]; then
  trap 'bash scripts/pg-test-server.sh stop' EXIT
  if pg_env=$(bash scripts/pg-test-server.sh start); then
    eval "$pg_env"
  elif [ -n "${CI:-}" ]; then
    echo "PostgreSQL could not start, and CI is set: its tests must run" >&2
    exit 1
  else
    echo "PostgreSQL could not start: its tests will be skipped (each says so)" >&2
  fi
fi
# Only what the tests use: the host (unit, router and end-to-end tests), the SDK and the fixtures.
# Not the benchmark crate (its second wasmtime, Extism's, is a long build that no test needs) nor
# the plugins' native builds (the tests build them for wasm32-wasip2).
cargo test -p hookhost -p hookhost-guest -p hookhost-fixtures "$@"
