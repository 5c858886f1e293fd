#!/usr/bin/env bash
# Creates the pinned virtual environment for Python kafkaesk 0.8.5.
#
#   bench/python/setup.sh [VENV_DIR]     # default: target/bench-python-venv
#
# Idempotent: an environment whose pins match requirements.txt is kept.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-$HERE/../../target/bench-python-venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.requirements"
if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$STAMP" "$HERE/requirements.txt"; then
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
cp "$HERE/requirements.txt" "$STAMP"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("python kafkaesk", m.version("kafkaesk"), "ready")' >&2
