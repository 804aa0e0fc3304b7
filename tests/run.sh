#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it. Used as-is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test,cpu]"

# Debian's Chromium for the browser tests (playwright-core drives it; no browser is ever downloaded).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi

# Frontend: install the locked npm packages, rebuild the bundle and fail if the committed one is stale.
if [ -f frontend/package.json ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  if ! git diff --quiet -- tb_xai/plugin/static; then
    echo "The committed frontend bundle (tb_xai/plugin/static) is stale: run 'cd frontend && npm run build' and commit it." >&2
    git --no-pager diff --stat -- tb_xai/plugin/static >&2
    exit 1
  fi
fi

python3 -m pytest -q tests "$@"
