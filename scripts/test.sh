#!/usr/bin/env bash
# Install (the hashed dev lock), lint (scripts/lint.sh), then run the whole test suite: unit and
# integration tests (including papermill runs of every notebook, tests/test_notebooks.py), then
# nbval over every notebook on a temporary sample.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh requirements-dev.lock
./scripts/lint.sh
.venv/bin/python -m pytest -q -p no:cacheprovider tests
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
WORKBENCH_RDAGENT_ROOT="$scratch/rd" WORKBENCH_ARCHIVE="$scratch/archive" \
  .venv/bin/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks
