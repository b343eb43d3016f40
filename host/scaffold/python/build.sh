#!/usr/bin/env bash
# Builds {{name}}.wasm beside this script, with its fixtures embedded; componentize-py is
# installed in .venv on the first build. A failed build leaves no {{name}}.wasm behind, so
# nothing stale is tested or pushed.
set -euo pipefail
cd "$(dirname "$0")"
rm -f {{name}}.wasm
trap 'rm -f {{name}}.wasm.tmp' EXIT
# A syntax error names its file and line here, before the toolchain hides it.
python3 -B -c 'import ast, sys
for path in sys.argv[1:]:
    try:
        ast.parse(open(path, encoding="utf-8").read(), path)
    except SyntaxError as e:
        sys.exit(f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}")' *.py
if [ ! -x .venv/bin/componentize-py ] || ! cmp -s requirements.txt .venv/requirements.txt; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt .venv/requirements.txt
fi
PYTHONDONTWRITEBYTECODE=1 .venv/bin/componentize-py -d wit -w dragoman:translator/inbound-translator \
    componentize app -o {{name}}.wasm.tmp >/dev/null
# Embed the fixtures in the component: a host runs them before this version serves.
"${DRAGOMAN:-{{dragoman}}}" plugin pack {{name}}.wasm.tmp fixtures --output {{name}}.wasm
