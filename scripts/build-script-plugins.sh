#!/usr/bin/env bash
# Builds the JavaScript and Python plugins (plugins/{js,python}/*, the test plugins in
# tests/plugins/{js,python}/* and the benchmark plugins in bench/plugins/{js,python}/*) into
# components, with the guest helpers (guest-sdk/js, guest-sdk/python) and the build tools pinned
# and installed inside the project (tools/js/node_modules, target/tools/python): componentize-js
# for JavaScript, componentize-py for Python. Output: target/script-plugins/<lang>-<name>.wasm.
# Incremental: a plugin is rebuilt only when one of its files, its helpers or the WIT is newer
# than its component.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/script-plugins" "$target/tools"
target="$(cd "$target" && pwd)"
out="$target/script-plugins"
root="$(pwd)"
wit="$root/wit/v0.1.0"

if [ ! -x tools/js/node_modules/.bin/componentize-js ] && [ ! -f tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js ]; then
  # No lock file: one written on this machine leaves out packages other installs need (npm's
  # platform-optional handling), so `npm ci` from it fails; the tool itself is pinned exactly.
  npm install --prefix tools/js --no-save --no-audit --no-fund --loglevel=error
fi
venv="$target/tools/python"
if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/python/requirements.txt
fi

stale() { # stale OUTPUT INPUT_DIR...
  [ ! -f "$1" ] && return 0
  [ -n "$(find "${@:2}" "$wit" -newer "$1" -type f -not -path '*/__pycache__/*' -print -quit)" ]
}

for dir in plugins/js/*/ tests/plugins/js/*/ bench/plugins/js/*/; do
  name=$(basename "$dir"); wasm="$out/js-$name.wasm"
  if stale "$wasm" "$dir" guest-sdk/js; then
    echo "building JavaScript plugin $name"
    # -d http -d fetch-event: no wasi:http (outbound HTTP goes through hookhost's own import).
    node tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js "$dir/app.js" \
      --wit "$wit" -n merchant-plugin -d http -d fetch-event -o "$wasm.tmp"
    mv "$wasm.tmp" "$wasm"
  fi
done
for dir in plugins/python/*/ tests/plugins/python/*/ bench/plugins/python/*/; do
  name=$(basename "$dir"); wasm="$out/python-$name.wasm"
  if stale "$wasm" "$dir" guest-sdk/python; then
    echo "building Python plugin $name"
    # -p: the plugin's own folder, then the guest helpers (guest-sdk/python/hookhost.py).
    (cd "$dir" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" -d "$wit" -w merchant-plugin \
      componentize app -p . -p "$root/guest-sdk/python" -o "$wasm.tmp")
    mv "$wasm.tmp" "$wasm"
  fi
done
echo "script plugins in $out: $(cd "$out" && ls *.wasm | tr '\n' ' ')"
