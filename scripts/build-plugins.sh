#!/usr/bin/env bash
# Builds every plugin in the workspace for wasm32-wasip2 (installing the target if needed) and
# copies the components to build/plugins/ (or $1). Incremental: cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/plugins}"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
# The one list of Rust plugins, shared with the tests (hookhost-fixtures).
mapfile -t plugins < <(grep -v '^\s*\(#\|$\)' fixtures/rust-plugins.txt)
args=()
for p in "${plugins[@]}"; do args+=(-p "$p"); done
cargo build --release --target wasm32-wasip2 "${args[@]}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"
for p in "${plugins[@]}"; do
  cp "$target/wasm32-wasip2/release/${p//-/_}.wasm" "$out/$p.wasm"
done
echo "plugins in $out: ${plugins[*]}"
