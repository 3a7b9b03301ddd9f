#!/usr/bin/env bash
# Create .venv and install the pinned, hashed dependencies plus workbench itself (editable).
# The lock file is requirements.lock (runtime + JupyterLab) unless given, e.g. requirements-dev.lock
# (scripts/test.sh). The lock files are made by scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LOCK="${1:-requirements.lock}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --require-hashes -r "$LOCK"
# no build isolation: setuptools comes from the hashed lock, not from an unpinned download
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
