#!/usr/bin/env bash
# Builds the JavaScript translator into a component: build.sh OUT.wasm [APP.js]
# (APP.js builds another module with the same pinned toolchain; the tests use it.)
# Installs the pinned componentize-js (package-lock.json) beside the output, once; needs
# node and npm, and the npm registry.
# A failed build leaves no component at OUT.wasm, so nothing stale is tested or pushed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
app="${2:-$here/app.js}"
sdk="$here/../../guest-sdk/js/dragoman.js"
rm -f "$out"
tools="$(dirname "$out")/js-toolchain"
if [ ! -x "$tools/node_modules/.bin/componentize-js" ] || ! cmp -s "$here/package-lock.json" "$tools/package-lock.json"; then
    mkdir -p "$tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --silent)
fi
# The app is staged beside the SDK module it imports as './dragoman.js'.
stage="$out.src"
rm -rf "$stage"
mkdir -p "$stage"
cp "$app" "$stage/app.js"
cp "$sdk" "$stage/dragoman.js"
# A syntax error names its file and line here; the componentizer would name neither.
node --check "$app"
node --check "$sdk"
"$tools/node_modules/.bin/componentize-js" "$stage/app.js" --wit "$here/../../wit" \
    --world-name dragoman:translator/inbound-translator --disable http fetch-event -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
