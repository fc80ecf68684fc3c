#!/bin/sh
# Build dist/tinymail.pyz: tinymail and its pure-Python dependencies in one file.
# Usage: ./zipapp.sh            (needs python3 >= 3.11 and pip; reaches PyPI or a mirror)
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
build=build/zipapp
rm -rf "$build"
mkdir -p "$build" dist
"$PYTHON" -m pip install --quiet --no-compile --target "$build" .
# Keep only what runs: no caches, no console-script shims, and of the package metadata only
# METADATA (dnspython's trio backend checks trio's version with importlib.metadata).
rm -rf "$build/bin"
find "$build" -name '__pycache__' -type d -prune -exec rm -rf {} +
find "$build" -mindepth 2 -maxdepth 2 -path '*.dist-info/*' ! -name METADATA -exec rm -rf {} +
if find "$build" -name '*.so' | grep -q .; then
    echo "zipapp.sh: a dependency is not pure Python:" >&2
    find "$build" -name '*.so' >&2
    exit 1
fi
# zipimport never writes bytecode: without .pyc in the archive every run compiles every module
# it imports (sendmail's start-up, bench/sendmail_latency.py). Legacy .pyc files next to the
# .py (-b) are the only layout zipimport reads; it checks them against the .py's timestamp in
# the archive and falls back to the source when they are stale or from another Python version.
"$PYTHON" -m compileall -q -b -j 0 "$build" >/dev/null
# Every run of the archive starts by parsing its whole zip directory in Python (zipimport),
# about 37,000 instructions per entry: a bare interpreter's start-up costs 1,000 entries.
# So the dependencies' test suites and type stubs are left out. Their sources stay: a .pyc
# only loads on the Python version that compiled it, and the archive must run on any python3
# >= 3.11 (zipimport falls back to the source when the .pyc's magic number differs).
for pkg in "$build"/*/; do
    case "$(basename "$pkg")" in tinymail|*.dist-info) continue ;; esac
    find "$pkg" -depth -type d \( -name _tests -o -name tests \) -exec rm -rf {} +
    find "$pkg" \( -name '*.pyi' -o -name py.typed \) -type f -delete
done
# Deflated (-c): stored entries start ~7% faster from the archive (no zlib inflate) but make
# it 2.7 times larger (8 MB); one small file matters more on the devices it is made for.
"$PYTHON" -m zipapp "$build" -m "tinymail.__main__:main" -p "/usr/bin/env python3" \
    -c -o dist/tinymail.pyz
echo "built dist/tinymail.pyz ($(wc -c < dist/tinymail.pyz) bytes)"
