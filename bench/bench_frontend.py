"""First paint of the Attributions tab on a large run, in headless Chromium against a real TensorBoard.

Writes two synthetic runs of STEPS logged steps x PROBES probes x FEATURES features (each with a Keras-style
`train` run holding a loss curve), starts TensorBoard on them, opens the tab on one run and on the two compared,
and prints two times: from the tab's render() call to the evolution heatmap drawn (what the frontend costs),
and from navigation to the same moment (what the user waits, TensorBoard's own page load included). The goal
is under 1500 ms from navigation on the project's 2-core CPU.

    python bench/bench_frontend.py [--steps 200] [--probes 256] [--features 100] [--repeats 3]

Needs `npm ci` in frontend/ (playwright-core) and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from tensorboard import program
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from tb_xai import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "frontend", "tests", "first_paint.mjs")


def write_synthetic_run(log_dir: str, steps: int, features: int, probes: int = 256, classes: int = 3, seed: int = 0) -> None:
    """A tabular run shaped like the callback's: `<log_dir>/xai` with attributions, `<log_dir>/train` with a loss."""
    rng = np.random.default_rng(seed)
    names = [f"feature_{i:03d}" for i in range(features)]
    weights = rng.gamma(0.6, 1.0, size=features)
    writer = summary.SummaryWriter(os.path.join(log_dir, "xai"))
    writer.write(summary.probe_pb("input", rng.normal(size=(probes, features)), feature_names=names, modality="tabular"), 0)
    writer.write(summary.labels_pb(rng.integers(0, classes, size=probes)), 0)
    for step in range(steps):
        progress = 1.0 - np.exp(-step / (steps / 5))
        attributions = rng.normal(size=(probes, features)) * (0.2 + weights * progress)
        logits = rng.normal(size=(probes, classes)) * (1 + 3 * progress)
        predictions = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        for item in [
            summary.attribution_pb("integrated_gradients", "input", attributions, feature_names=names, modality="tabular"),
            summary.predictions_pb(predictions, class_names=[f"class_{c}" for c in range(classes)]),
            summary.targets_pb(predictions.argmax(axis=1)),
        ]:
            writer.write(item, step)
    writer.close()
    scalars = EventFileWriter(os.path.join(log_dir, "train"))
    for step in range(steps):
        loss = float(1.2 * np.exp(-step / (steps / 6)) + 0.1)
        value = summary_pb2.Summary.Value(
            tag="epoch_loss",
            metadata=scalar_metadata.create_summary_metadata(display_name="epoch_loss", description=""),
            tensor=tensor_util.make_tensor_proto(np.float32(loss)),
        )
        scalars.add_event(event_pb2.Event(step=step, wall_time=1.7e9 + step, summary=summary_pb2.Summary(value=[value])))
    scalars.close()


def measure(url: str, hash_suffix: str) -> dict:
    out = subprocess.run(["node", SCRIPT, url, hash_suffix], check=True, capture_output=True, text=True, timeout=120,
                         cwd=os.path.join(ROOT, "frontend"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--probes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir:
        write_synthetic_run(os.path.join(log_dir, "baseline"), args.steps, args.features, args.probes, seed=0)
        write_synthetic_run(os.path.join(log_dir, "fix"), args.steps, args.features, args.probes, seed=1)
        board = program.TensorBoard()
        board.configure(argv=[None, "--logdir", log_dir, "--host", "127.0.0.1", "--port", "0"])
        url = board.launch()
        one = "&run=baseline%2Fxai&runs="
        two = "&run=baseline%2Fxai&runs=fix%2Fxai"
        for label, hash_suffix in (("one run, top 30 rows (default)", one), ("one run, all rows", one + "&rows=0"),
                                   ("two runs compared, top 30 rows", two)):
            runs = [measure(url, hash_suffix) for _ in range(args.repeats)]
            render = sorted(r["render_to_heatmap_ms"] for r in runs)
            navigation = sorted(r["navigation_to_heatmap_ms"] for r in runs)
            boot = sorted(r["navigation_to_render_ms"] for r in runs)
            print(f"first paint, {args.steps} steps x {args.probes} probes x {args.features} features, {label}, median of {args.repeats} "
                  f"(goal < 1500 ms): render() -> heatmap {render[len(render) // 2]:.0f} ms, "
                  f"navigation -> heatmap {navigation[len(navigation) // 2]:.0f} ms (of which TensorBoard's own page "
                  f"until it calls render(): {boot[len(boot) // 2]:.0f} ms)", flush=True)


if __name__ == "__main__":
    main()
