#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script, with its fixtures embedded; componentize-js is
# installed in node_modules on the first build. A failed build leaves no {{name}}.wasm
# behind, so nothing stale is tested or pushed.
set -euo pipefail
cd "$(dirname "$0")"
rm -f {{name}}.wasm
trap 'rm -f {{name}}.wasm.tmp' EXIT
# A syntax error names its file and line here; the componentizer would name neither.
for source in *.js; do
    node --check "$source"
done
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund --silent
fi
node_modules/.bin/componentize-js app.js --wit wit --world-name dragoman:translator/inbound-translator \
    --disable http fetch-event -o {{name}}.wasm.tmp >/dev/null
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm.tmp fixtures --output {{name}}.wasm
