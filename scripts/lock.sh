#!/usr/bin/env bash
# Pin every dependency with hashes, from pyproject.toml:
#   requirements.lock      runtime + lab extra      (scripts/install.sh installs it)
#   requirements-dev.lock  runtime + lab + dev      (scripts/test.sh installs it)
# Versions already pinned in a lock file are kept (uv reads its output file back), and the dev lock
# is constrained to the runtime lock, so tests run exactly what users get. Arguments go to
# `uv pip compile`: `scripts/lock.sh --upgrade-package duckdb` moves one package, `--upgrade` all.
# uv uses the package index pip is configured with (PIP_* variables, pip.conf) unless UV_* are set.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_command() {
  if [ -n "${UV:-}" ]; then echo "$UV"
  elif [ -x .venv/bin/uv ]; then echo .venv/bin/uv
  elif command -v uv >/dev/null; then command -v uv
  else echo "lock.sh: uv not found; install it (pip install uv) or set UV=/path/to/uv" >&2; exit 1
  fi
}

# The value pip would use for an option: its PIP_* environment variable, else its config files.
pip_option() {
  local variable="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!variable:-}" ]; then
    echo "${!variable}"
  else
    python3 -m pip config list 2>/dev/null | sed -n "s/^\(global\|install\)\.$1='\(.*\)'$/\2/p" | tail -1
  fi
}

# Point uv at pip's index, extra indexes and find-links, unless uv is configured explicitly. The
# main index is listed first so that a version it has comes with the hashes of all its files (every
# platform), not only those of a local mirror holding one wheel.
use_pip_index() {
  local main extra links
  main="$(pip_option index-url)"
  main="${main:-https://pypi.org/simple}"
  extra="$(pip_option extra-index-url)"
  links="$(pip_option find-links)"
  if [ -z "${UV_DEFAULT_INDEX:-}${UV_INDEX_URL:-}${UV_INDEX:-}${UV_EXTRA_INDEX_URL:-}" ]; then
    export UV_DEFAULT_INDEX="$main" UV_INDEX="$main${extra:+ $extra}"
  fi
  if [ -n "$links" ] && [ -z "${UV_FIND_LINKS:-}" ]; then export UV_FIND_LINKS="${links// /,}"; fi
  # pip takes the best version from all indexes together; uv's default stops at the first index
  export UV_INDEX_STRATEGY="${UV_INDEX_STRATEGY:-unsafe-best-match}"
}

# Lock pyproject.toml's requirements plus setuptools, which builds the editable install
# (install.sh builds it without isolation, so that it too comes from the hashed lock).
compile() {
  local output="$1"
  shift
  echo "setuptools>=68" | "$UV_BIN" pip compile pyproject.toml - --quiet --generate-hashes \
    --python "${PYTHON:-python3}" --custom-compile-command "scripts/lock.sh" --output-file "$output" "$@"
}

UV_BIN="$(uv_command)"
use_pip_index
compile requirements.lock --extra lab "$@"
compile requirements-dev.lock --extra lab --extra dev --constraints requirements.lock "$@"
