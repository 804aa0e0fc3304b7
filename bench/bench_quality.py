"""The quality figures' cost, as a ratio of each method's own attribution time at the same logged step.

Run: python bench/bench_quality.py [--epochs 5] [--probes 32]
Trains a breast-cancer MLP (tabular) and a digits CNN (8x8 images) for a few epochs with every method and every
quality figure at their default budgets, and prints, per method, the median over the logged steps after the
first two (the first calls at a new row count trace the compiled functions) of: drift (numpy only), faithfulness (deletion/insertion curves
through the compiled predict), seeds (the re-explained subset, sampling methods only), each over the
method's attribution time at that step; and the one-off sanity reference (the randomized model's maps) over one
attribution (that first call also traces the method's compiled functions, so cheap methods show a large ratio).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

GROUPS = ("drift", "faithfulness", "seeds")


def train(model, x, y, probe, labels, methods, epochs):
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    callback = tb_xai.AttributionCallback(tempfile.mkdtemp(), probe, labels=labels, methods=methods)
    rows = []

    def record(epoch, logs):
        rows.append({m.name: (callback.timings[m.name], dict(callback.quality.timings.get(m.name, {})))
                     for m in callback.methods})

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[callback, keras.callbacks.LambdaCallback(on_epoch_end=record)])
    return callback, rows


def report(label, callback, rows):
    print(f"\n{label}: quality figure time / the method's attribution time (median over steps 2..)")
    print(f"{'method':<22}{'attribution s':>14}" + "".join(f"{g:>14}" for g in GROUPS) + f"{'sanity (once)':>15}")
    for method in callback.methods:
        name = method.name
        later = rows[2:] or rows
        seconds = float(np.median([r[name][0] for r in later]))
        ratios = []
        for group in GROUPS:
            values = [r[name][1][group] / r[name][0] for r in later if group in r[name][1]]
            ratios.append(f"{np.median(values):>14.3f}" if values else f"{'-':>14}")
        reference = callback.quality.timings.get(name, {}).get("sanity_reference")
        sanity = f"{reference / seconds:>15.2f}" if reference is not None else f"{'-':>15}"
        print(f"{name:<22}{seconds:>14.4f}" + "".join(ratios) + sanity)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--probes", type=int, default=32)
    args = parser.parse_args(argv)
    import keras
    from sklearn.datasets import load_breast_cancer, load_digits

    data = load_breast_cancer()
    x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
    y = data.target
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    methods = ["saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "expected_gradients",
               "kernel_shap", "lime"]
    report(f"MLP 30-64-2, {args.probes} probes", *train(model, x, y, x[:args.probes], y[:args.probes], methods,
                                                        args.epochs))

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    cnn = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    methods = ["saliency", "integrated_gradients", "smoothgrad", "grad_cam", "occlusion", "kernel_shap", "lime"]
    report(f"CNN on 8x8 digits, {args.probes} probes",
           *train(cnn, images, digits.target, images[:args.probes], digits.target[:args.probes], methods,
                  args.epochs))


if __name__ == "__main__":
    main()
