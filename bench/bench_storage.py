"""Bytes on disk per probe per logged step, for a tabular and an image probe set.

Run: python bench/bench_storage.py
Writes 50 steps of one method with the real writer and divides the event file's growth by steps x probes.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from tb_xai import summary  # noqa: E402


def per_probe_per_step(shape, n_probes=64, n_classes=10, steps=50, methods=1):
    run_dir = tempfile.mkdtemp()
    writer = summary.SummaryWriter(run_dir)
    rng = np.random.default_rng(0)
    writer.write(summary.probe_pb("input", rng.normal(size=(n_probes,) + shape)), 0)
    writer.flush()
    (path,) = glob.glob(os.path.join(run_dir, "*tfevents*"))
    before = os.path.getsize(path)
    for step in range(steps):
        writer.write(summary.predictions_pb(rng.random((n_probes, n_classes))), step)
        writer.write(summary.targets_pb(rng.integers(0, n_classes, n_probes)), step)
        for m in range(methods):
            writer.write(summary.attribution_pb(f"method_{m}", "input", rng.normal(size=(n_probes,) + shape)), step)
    writer.close()
    return (os.path.getsize(path) - before) / steps / n_probes


def main():
    print(f"{'case':<40}{'bytes/probe/step':>18}{'of which attribution':>22}")
    for label, shape, classes in (("tabular, 30 features, 2 classes", (30,), 2),
                                  ("image 8x8x1, 10 classes", (8, 8, 1), 10),
                                  ("image 28x28x3, 10 classes", (28, 28, 3), 10)):
        one = per_probe_per_step(shape, n_classes=classes)
        two = per_probe_per_step(shape, n_classes=classes, methods=2)
        print(f"{label:<40}{one:>18.0f}{two - one:>22.0f}")


if __name__ == "__main__":
    main()
