#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script, with componentize-py installed in .venv.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
.venv/bin/componentize-py -d wit -w dragoman:translator/inbound-translator componentize app -o {{name}}.wasm >/dev/null
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm fixtures >/dev/null
