#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script, with its fixtures embedded. A failed build leaves
# no {{name}}.wasm behind, so nothing stale is tested or pushed.
set -euo pipefail
cd "$(dirname "$0")"
rm -f {{name}}.wasm
trap 'rm -f {{name}}.wasm.tmp' EXIT
cargo build --quiet --release --target wasm32-wasip2 --target-dir "${CARGO_TARGET_DIR:-target}"
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm.tmp
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm.tmp fixtures --output {{name}}.wasm
