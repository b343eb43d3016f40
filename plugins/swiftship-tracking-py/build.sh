#!/usr/bin/env bash
# Builds the carrier translator into a component: build.sh OUT.wasm
# With the same pinned Python toolchain as every Python plugin of this repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../acme-erp-orders-py/build.sh" "$1" "$here"
