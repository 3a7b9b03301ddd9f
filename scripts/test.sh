#!/usr/bin/env bash
# Install, then run the whole test suite: unit and integration tests, papermill runs of the
# notebooks (tests/test_notebooks.py) and nbval over every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
.venv/bin/python -m pytest -q -p no:cacheprovider tests
.venv/bin/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks
