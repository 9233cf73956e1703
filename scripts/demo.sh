#!/usr/bin/env bash
# The demo: builds the example plugins and serves demo/hookhost.toml (embedded SQLite in
# demo/.data, demo tenants, the built-in sink as the merchants' backend) on 127.0.0.1:8080.
# In another terminal, send a webhook with the curl lines README.md shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh demo/.data/plugins
exec cargo run --release -p hookhost -- serve --config demo/hookhost.toml "$@"
