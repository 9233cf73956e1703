#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: `start` creates a cluster (in target/pg-test when
# the postgres user can write there, else a temporary folder), listening on 127.0.0.1 only, and
# prints its URL; `stop` stops it and removes the cluster. Installs Debian's `postgresql` package
# when no server is installed (as root, as CI runs). `fsync=off`: test data only (commits still reach
# the OS before they are acknowledged, so stopping the server loses nothing).
# `pause` stops the server and keeps its data, `resume` starts it again (outage tests).
# HOOKHOST_PG_DIR, HOOKHOST_PG_PORT and HOOKHOST_PG_STATE choose another cluster (a test's own);
# HOOKHOST_PG_DURABLE=1 keeps fsync on (benchmarks: commits as durable as SQLite's).
#
#   eval "$(scripts/pg-test-server.sh start)"   # exports HOOKHOST_TEST_PG_URL
#   scripts/pg-test-server.sh stop
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${HOOKHOST_PG_STATE:-$root/target/pg-test.state}
# A free loopback port unless one is given (several clusters may run at once: CI beside a
# developer's run, a test's own server beside the shared one).
port=${HOOKHOST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

server_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# Runs a command as the cluster's owner: initdb refuses root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  bin=$(server_bin)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "PostgreSQL is not installed (apt-get install postgresql) and this user cannot install it" >&2
      exit 1
    fi
    echo "installing PostgreSQL from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    bin=$(server_bin)
  fi
  [ -n "$bin" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
  [ -f "$state" ] && stop >/dev/null 2>&1 || true

  local dir="${HOOKHOST_PG_DIR:-$root/target/pg-test}"
  mkdir -p "$(dirname "$dir")"
  if [ "$(id -u)" = 0 ]; then
    rm -rf "$dir" && mkdir -p "$dir" && chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      rm -rf "$dir"
      dir=$(mktemp -d /tmp/hookhost-pg.XXXXXX)
      chown postgres: "$dir"
    fi
  else
    rm -rf "$dir" && mkdir -p "$dir"
  fi
  echo "$dir $port" > "$state"
  as_owner "$bin/initdb" -D "$dir/data" -U hookhost -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  run_server "$bin" "$dir" "$port"
  echo "export HOOKHOST_TEST_PG_URL=postgres://hookhost@127.0.0.1:$port/postgres"
}

run_server() {
  local bin=$1 dir=$2 port=$3 durability="-c fsync=off -c full_page_writes=off"
  [ -n "${HOOKHOST_PG_DURABLE:-}" ] && durability=""
  # A log file for pg_ctl: without one, whoever waits on its output pipes hangs.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=300" \
    start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
}

pause() {
  local dir port
  read -r dir port < "$state"
  as_owner "$(server_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
}

resume() {
  local dir port
  read -r dir port < "$state"
  run_server "$(server_bin)" "$dir" "$port"
}

stop() {
  [ -f "$state" ] || return 0
  local dir port bin
  read -r dir port < "$state"
  bin=$(server_bin)
  if [ -n "$bin" ] && [ -d "$dir/data" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" "$state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  pause) pause ;;
  resume) resume ;;
  *) echo "usage: $0 start|stop|pause|resume" >&2; exit 2 ;;
esac
