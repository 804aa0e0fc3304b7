#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it. Used as-is by .ci/run.
# Python packages go into the active virtual environment, or into .venv (created here) when none is active,
# so the system Python is never modified (Debian's refuses pip installs anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || {
      rm -rf .venv
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    }
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[test,cpu]"

# Debian's Chromium for the browser tests (playwright-core drives it; no browser is ever downloaded).
if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
fi

# Frontend: install the locked npm packages, type-check, rebuild the bundle, and fail if the committed one is
# stale (changed or new files alike).
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent build)
if [ -n "$(git status --porcelain -- tb_xai/plugin/static)" ]; then
  echo "The committed frontend bundle (tb_xai/plugin/static) is stale: run 'cd frontend && npm run build' and commit it." >&2
  git status --short -- tb_xai/plugin/static >&2
  exit 1
fi

python -m pytest -q --timeout=900 tests "$@"
