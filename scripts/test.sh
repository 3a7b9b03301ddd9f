#!/usr/bin/env bash
# Install (the hashed dev lock), lint (scripts/lint.sh), then run the whole test suite: unit and
# integration tests (including papermill runs of every notebook, tests/test_notebooks.py), then
# nbval over every notebook on a temporary sample.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh requirements-dev.lock
./scripts/lint.sh
# two workers (pytest-xdist) take about 40% less time than one process on 2 cores; PYTEST_WORKERS=0
# runs in one process. Tests that must not run at the same time: @pytest.mark.xdist_group("name").
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --dist loadgroup tests
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
WORKBENCH_RDAGENT_ROOT="$scratch/rd" WORKBENCH_ARCHIVE="$scratch/archive" \
  .venv/bin/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks
