#!/usr/bin/env bash
# The console embeds uPlot (its charts) from npm, at the version pinned in
# host/console/package-lock.json, as files in host/console/vendor/ (include_str!: no CDN, and a
# cargo build needs no npm).
#   scripts/vendor-console.sh          installs the pinned version and copies it into vendor/
#   scripts/vendor-console.sh --check  fails when vendor/ is not exactly that version's files
set -euo pipefail
cd "$(dirname "$0")/../host/console"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
from=node_modules/uplot
files=(dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE)
targets=(vendor/uPlot.iife.min.js vendor/uPlot.min.css vendor/uPlot.LICENSE)
for i in "${!files[@]}"; do
    if [[ "${1:-}" == --check ]]; then
        cmp -s "$from/${files[$i]}" "${targets[$i]}" || {
            echo "host/console/${targets[$i]} is not uplot $(node -p "require('./$from/package.json').version")'s ${files[$i]}: run scripts/vendor-console.sh" >&2
            exit 1
        }
    else
        mkdir -p vendor
        cp "$from/${files[$i]}" "${targets[$i]}"
    fi
done
