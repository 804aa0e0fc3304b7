#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it. Used as-is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/python_env.sh
. scripts/python_env.sh
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[test,cpu,jax]"
# The backend matrix (tests/test_backends.py) runs every method on TensorFlow, JAX, PyTorch and tf_keras.
# PyTorch is pinned: an unpinned install resolves to the CUDA build (several GB); this one is its CPU wheel.
python -m pip install --quiet "torch==2.13.0"
# tf_keras of the installed TensorFlow's release, without its `tensorflow` requirement: tensorflow-cpu is the
# same module, and pulling `tensorflow` too would install a second copy over it.
tf_release=$(python -c "import importlib.metadata as m; print('.'.join(m.version('tensorflow-cpu').split('.')[:2]))")
python -m pip install --quiet --no-deps "tf_keras==${tf_release}.*"
# keras_hub for a BERT backbone with random weights (tests/test_text_models.py), without its tensorflow-text
# requirement: that one pulls the `tensorflow` distribution in beside tensorflow-cpu, and no backbone needs it.
python -m pip install --quiet absl-py kagglehub "kagglesdk==0.1.28" regex rich sentencepiece tokenizers
python -m pip install --quiet --no-deps "keras-hub==0.32.0"

# Debian's Chromium for the browser tests (playwright-core drives it; no browser is ever downloaded).
if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
fi

# Frontend: install the locked npm packages, type-check, rebuild the bundle, and fail if the committed one is
# stale (changed or new files alike).
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent build)
changed=$(git status --porcelain -- tb_xai/plugin/static)  # its own line: a failing git stops the run
if [ -n "$changed" ]; then
  echo "The committed frontend bundle (tb_xai/plugin/static) is stale: run 'cd frontend && npm run build' and commit it." >&2
  git status --short -- tb_xai/plugin/static >&2
  exit 1
fi

# Two workers, each file's tests in one of them (its module and session fixtures train once per worker).
python -m pytest -q --timeout=900 -n 2 --dist loadfile tests "$@"
