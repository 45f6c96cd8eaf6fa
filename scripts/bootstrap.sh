#!/usr/bin/env bash
# Create .venv with a real Python >= 3.12 and install mrp-formula with its dev extras.
# Finds the interpreter itself: $PYTHON, python3.14..python3.12 on PATH, pyenv versions,
# /usr/local/bin and /usr/bin. A pyenv shim that is not selected fails the version probe
# and is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
  local c
  for c in "${PYTHON:-}" python3.14 python3.13 python3.12 python3 python; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && ok "$(command -v "$c")"; then command -v "$c"; return; fi
  done
  for c in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3 \
           /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    if [ -x "$c" ] && ok "$c"; then echo "$c"; return; fi
  done
  return 1
}

stamp=.venv/.installed
if [ -x .venv/bin/python ] && ok .venv/bin/python && [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
py=$(find_python) || {
  echo "bootstrap: no Python >= 3.12 found. Install one, or run: PYTHON=/path/to/python3.12 make test" >&2
  exit 2
}
echo "bootstrap: using $py ($("$py" --version 2>&1))" >&2
if [ ! -x .venv/bin/python ] || ! ok .venv/bin/python; then
  rm -rf .venv
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[dev]"
touch "$stamp"
