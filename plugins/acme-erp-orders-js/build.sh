#!/usr/bin/env bash
# Builds the JavaScript translator into a component: build.sh OUT.wasm [APP.js]
# (APP.js builds another module with the same pinned toolchain; the tests use it.)
# Installs the pinned componentize-js (package-lock.json) beside the output, once; needs
# node and npm, and the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
app="${2:-$here/app.js}"
tools="$(dirname "$out")/js-toolchain"
if [ ! -x "$tools/node_modules/.bin/componentize-js" ] || ! cmp -s "$here/package-lock.json" "$tools/package-lock.json"; then
    mkdir -p "$tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --silent)
fi
"$tools/node_modules/.bin/componentize-js" "$app" --wit "$here/../../wit" \
    --world-name dragoman:translator/inbound-translator --disable http fetch-event -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
