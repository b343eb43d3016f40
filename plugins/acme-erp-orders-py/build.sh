#!/usr/bin/env bash
# Builds the Python translator into a component: build.sh OUT.wasm [APP_DIR]
# (APP_DIR builds another app.py with the same pinned toolchain; the tests use it.)
# Installs the pinned componentize-py (requirements.txt) into a virtual environment beside
# the output, once; needs python3 with venv and pip, and the PyPI registry.
# A failed build leaves no component at OUT.wasm, so nothing stale is tested or pushed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
app="${2:-$here}"
sdk="$here/../../guest-sdk/python/dragoman_guest.py"
rm -f "$out"
venv="$(dirname "$out")/py-venv"
if [ ! -x "$venv/bin/componentize-py" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
# The app's modules and the SDK's are staged beside the output: componentize-py writes
# bytecode caches next to the sources it reads, and the source tree stays as it was checked out.
stage="$out.src"
rm -rf "$stage"
mkdir -p "$stage"
cp "$app"/*.py "$sdk" "$stage"/
# A syntax error names its file and line here, before the toolchain hides it.
(cd "$stage" && python3 -B -c 'import ast, sys
for path in sys.argv[1:]:
    try:
        ast.parse(open(path, encoding="utf-8").read(), path)
    except SyntaxError as e:
        sys.exit(f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}")' *.py)
"$venv/bin/componentize-py" -d "$here/../../wit" -w dragoman:translator/inbound-translator \
    componentize -p "$stage" app -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
