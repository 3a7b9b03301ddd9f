#!/usr/bin/env bash
# Static checks, in this order: ruff (lint, then formatting), mypy (config in pyproject.toml), the
# import contracts (lint-imports) and the README's command reference (cog: regenerate it with
# `.venv/bin/cog -r README.md`). Every check runs; the script fails if any of them failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
PATHS=(workbench tests benchmarks scripts)
failed=()

# check NAME COMMAND...: run one check, remember its name if it fails
check() {
  local name="$1"
  shift
  echo "== $name"
  "$@" || failed+=("$name")
}

check "ruff check" "$BIN/ruff" check "${PATHS[@]}"
check "ruff format" "$BIN/ruff" format --check "${PATHS[@]}"
check mypy "$BIN/mypy"
check lint-imports "$BIN/lint-imports"
check "cog (README command reference)" "$BIN/cog" --check README.md
if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint failed: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
