#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script, with componentize-js installed in node_modules.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund --silent
fi
node_modules/.bin/componentize-js app.js --wit wit --world-name dragoman:translator/inbound-translator \
    --disable http fetch-event -o {{name}}.wasm >/dev/null
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm fixtures >/dev/null
