# Sourced by tests/run.sh and demo/run.sh: use the active virtual environment, or create and activate .venv.
# The system Python is never modified (Debian's refuses pip installs anyway).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -f .venv/bin/activate ]; then
    rm -rf .venv
    if ! python3 -m venv .venv 2>/dev/null; then
      # Debian's system Python ships venv without ensurepip until python3-venv is installed.
      rm -rf .venv
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
