#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --quiet --release --target wasm32-wasip2 --target-dir "${CARGO_TARGET_DIR:-target}"
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm fixtures >/dev/null
