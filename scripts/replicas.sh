#!/usr/bin/env bash
# Several replicas, locally: starts a throwaway PostgreSQL server (scripts/pg-test-server.sh, its
# own cluster in target/pg-replicas), builds the release host and the demo plugins, and serves the
# demo's tenants from three replicas on 127.0.0.1:8081, :8082 and :8083, all on that one database.
# Ctrl-C stops the replicas and removes the server. REPLICAS=N for another count (ports from 8081).
#
#   bash scripts/replicas.sh
set -euo pipefail
cd "$(dirname "$0")/.."
replicas=${REPLICAS:-3}
export HOOKHOST_PG_DIR=$PWD/target/pg-replicas HOOKHOST_PG_STATE=$PWD/target/pg-replicas.state

bash scripts/build-plugins.sh demo/.data/plugins
cargo build --release -p hookhost
pids=()
cleanup() {
  trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  bash scripts/pg-test-server.sh stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM
eval "$(bash scripts/pg-test-server.sh start)"

# The demo's config on PostgreSQL; the built-in sink (the merchants' stand-in backend) of the
# first replica serves all of them. Written beside the demo's, whose relative paths it keeps.
sed -e "s|^database = .*|database = \"$HOOKHOST_TEST_PG_URL\"\ncache_dir = \".data/cache\"|" \
    -e 's|127\.0\.0\.1:8080|127.0.0.1:8081|g' \
    demo/hookhost.toml > demo/.replicas.toml

for i in $(seq 1 "$replicas"); do
  port=$((8080 + i))
  RUST_LOG=${RUST_LOG:-info} target/release/hookhost serve --config demo/.replicas.toml \
    --listen "127.0.0.1:$port" 2> "demo/.data/replica-$i.log" &
  pids+=($!)
done
for i in $(seq 1 "$replicas"); do
  port=$((8080 + i))
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { cat "demo/.data/replica-$i.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "replica $i: http://127.0.0.1:$port (log: demo/.data/replica-$i.log, pid ${pids[$((i - 1))]})"
done
echo "database: $HOOKHOST_TEST_PG_URL"
echo "Ctrl-C stops the replicas and removes the database."
wait
