#!/usr/bin/env bash
# Install, then run the main job on the embedded default: generate a sample RD-Agent
# installation under data/sample (once), archive it into data/archive, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
.venv/bin/workbench demo --out data/sample --archive data/archive
