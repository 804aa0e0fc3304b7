"""The quality figures' cost, as a ratio of each method's own attribution time at the same logged step.

Run: python bench/bench_quality.py [--epochs 5] [--probes 32] [--default-cost-only]
First, the cost of the default figures (`tb_xai.quality.DEFAULT`): the tabular demo's model (breast cancer,
MLP 30-32-16-2, 32 probes, 15 epochs) trained with the callback at its defaults, once with `quality=False` and
once with the default `quality`, three times each, alternating; printed: the callback's own seconds (its hooks,
timed around each call), the fastest run of each, and their ratio. Then the tables: a breast-cancer MLP
(tabular) and a digits CNN (8x8 images) trained for a few epochs with every method and every quality figure
(`quality="all"`) at their default budgets, printing per method the median over the logged steps after the first
two (the first calls at a new row count trace the compiled functions) of: drift (numpy only), faithfulness
(deletion/insertion curves through the compiled predict), seeds (the re-explained subset, sampling methods only),
each over the method's attribution time at that step; and the one-off sanity reference (the randomized model's
maps) over one attribution (that first call also traces the method's compiled functions, so cheap methods show a
large ratio).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

GROUPS = ("drift", "faithfulness", "seeds")


def train(model, x, y, probe, labels, methods, epochs):
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    callback = tb_xai.AttributionCallback(tempfile.mkdtemp(), probe, labels=labels, methods=methods, quality="all")
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


HOOKS = ("on_train_begin", "on_train_batch_end", "on_epoch_end", "on_train_end")


def callback_seconds(quality, epochs: int) -> tuple:
    """(the callback's own seconds, fit's seconds, the callback) training the tabular demo's model with the
    callback at its defaults and `quality`."""
    import keras
    import tb_xai

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "demo"))
    from tabular import breast_cancer

    keras.utils.set_random_seed(0)
    x_train, y_train, probe, labels, feature_names, class_names = breast_cancer(32)
    model = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(tempfile.mkdtemp(), probe, labels=labels, feature_names=feature_names,
                                          class_names=class_names, quality=quality)
    spent = [0.0]
    for name in HOOKS:  # the hooks Keras calls, each timed around the call
        def timed(*args, _hook=getattr(callback, name), **kwargs):
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(callback, name, timed)
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[callback])
    return spent[0], time.perf_counter() - start, callback


def default_cost(epochs: int = 15) -> None:
    from tb_xai import quality as quality_lib

    runs = {"off": [], "default": []}
    for _ in range(3):  # alternating, the fastest of each kept: other work on the machine only adds time
        for label, quality in (("off", False), ("default", True)):
            runs[label].append(callback_seconds(quality, epochs))
    off, default = (min(runs[label], key=lambda run: run[0]) for label in ("off", "default"))
    print(f"default quality figures ({', '.join(quality_lib.DEFAULT)}) on the tabular demo's model, "
          f"{epochs} epochs, default methods (saliency, integrated_gradients):")
    print(f"  callback without quality: {off[0]:.3f} s of {off[1]:.3f} s fit")
    print(f"  callback with the default quality: {default[0]:.3f} s of {default[1]:.3f} s fit")
    print(f"  ratio (default quality / without): {default[0] / off[0]:.3f}")
    timings = default[2].quality.timings
    print("  of which, per method: " + "; ".join(
        f"{name}: sanity reference {t.get('sanity_reference', 0):.3f} s once, drift {t.get('drift', 0) * 1e3:.1f} ms "
        f"and sanity {t.get('sanity', 0) * 1e3:.1f} ms at the last step" for name, t in sorted(timings.items())))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--default-cost-only", action="store_true", help="only the cost of the default figures")
    args = parser.parse_args(argv)
    default_cost()
    if args.default_cost_only:
        return
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
