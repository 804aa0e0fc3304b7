#!/usr/bin/env bash
# From a fresh clone to the dashboard: installs tb_xai (CPU TensorFlow), trains one demo with the
# callback, then serves TensorBoard with the tb_xai plugin on 127.0.0.1.
#
#   demo/run.sh              the shortcut demo (the story tb_xai exists for)
#   demo/run.sh tabular      or: digits, shortcut, text, all; arguments after it go to the demo (--epochs 5)
#   PORT=6007 demo/run.sh    another port; RUNS=dir another log root; SKIP_INSTALL=1 skips the pip install
set -euo pipefail
cd "$(dirname "$0")/.."

demo="${1:-shortcut}"
case "$demo" in
  shortcut|tabular|digits|text) demos=("$demo") ;;
  all) demos=(tabular digits shortcut text) ;;
  *) echo "unknown demo '$demo'; expected one of: shortcut, tabular, digits, text, all" >&2; exit 2 ;;
esac
shift $(( $# > 0 ? 1 : 0 ))
port="${PORT:-6006}"
runs="${RUNS:-runs}"

# shellcheck source=scripts/python_env.sh
. scripts/python_env.sh
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  python -m pip install --quiet -e ".[cpu]"
fi

for name in "${demos[@]}"; do
  echo "== demo/$name.py"
  python "demo/$name.py" --log-dir "$runs/$name" "$@"
done

echo
echo "TensorBoard with the tb_xai plugin: http://127.0.0.1:$port/#tb_xai  (the Attributions tab; Ctrl-C stops it)"
exec tensorboard --logdir "$runs" --host 127.0.0.1 --port "$port"
