"""Attributions of a tabular classifier while it trains: breast cancer, gradients, SHAP and LIME, by name.

An MLP learns scikit-learn's breast cancer data set (30 named measurements, malignant or benign). At every
epoch the callback explains 32 held-out patients with saliency, integrated gradients, KernelSHAP and LIME,
so TensorBoard shows which measurements the model relies on, since which epoch, and whether the methods
agree.

Run (well under a minute on 2 CPU cores; offline):
    python demo/tabular.py --log-dir runs/tabular
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def breast_cancer(probes: int, seed: int = 0):
    """Standardized training rows and held-out probes, with feature and class names."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, held_out = order[:-probes], order[-probes:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / std
    return (x[train], y[train], x[held_out], y[held_out],
            [str(n) for n in data.feature_names], [str(n) for n in data.target_names])


def methods(x_train, quick: bool = False, seed: int = 0):
    """The demo's methods: saliency, integrated gradients, KernelSHAP and LIME over a k-means background."""
    from tb_xai.methods import Background, IntegratedGradients, KernelShap, Lime

    background = Background.kmeans(x_train, k=10 if quick else 20, seed=seed)
    return [
        "saliency",
        IntegratedGradients(steps=32),
        # --quick: 512, past the rows up to which a tabular probe gets the kernel-ridge surrogate (10 rows x 257
        # coalitions would), which costs this MLP more than its model calls.
        KernelShap(samples=512 if quick else "auto", background=background),
        Lime(samples=500 if quick else 2000, background=background),
    ]


def model():
    """The demo's MLP (30 -> 32 -> 16 -> 2), compiled."""
    import keras

    model = keras.Sequential([
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-dir", default=os.path.join("runs", "tabular"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="fewer SHAP/LIME samples (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import tb_xai

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    x_train, y_train, probe, labels, feature_names, class_names = breast_cancer(args.probes, args.seed)
    chosen = methods(x_train, args.quick, args.seed)
    net = model()
    # Every epoch logged: these epochs take tens of milliseconds, which the callback's default 5% budget
    # (max_overhead) would pay for only one logged epoch in several of.
    callback = tb_xai.AttributionCallback(args.log_dir, probe, labels=labels, methods=chosen,
                                          feature_names=feature_names, class_names=class_names,
                                          max_overhead=None)
    history = net.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0,
                      callbacks=[callback, keras.callbacks.TensorBoard(args.log_dir)])

    run = tb_xai.load(args.log_dir)
    print(f"\ntraining accuracy {history.history['accuracy'][-1]:.0%}; seconds per method at the last epoch: "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in callback.timings.items()))
    print("\nTop 3 measurements at the first and the last epoch:")
    for method in run.methods:
        first, last = run.ranking(method, step=0)[:3], run.ranking(method)[:3]
        print(f"  {method:22s} epoch {run.steps(method)[0]}: {', '.join(first)}")
        print(f"  {'':22s} epoch {run.steps(method)[-1]}: {', '.join(last)}")
    print("\nHow far the methods agree at the last epoch (Spearman rank correlation of the importance):")
    for pair in run.agreement():
        print(f"  {' vs '.join(pair['methods']):40s} {pair['spearman'][-1]:+.2f}")
    print("\nWhat to look at: TensorBoard's Attributions tab, run 'tabular/xai'. The evolution heatmap ranks the 30 "
          "measurements per epoch; the agreement card compares SHAP, LIME and the gradients; pick a probe to see "
          "its explanation next to its predicted probability.")
    print(f"\nDone in {time.perf_counter() - start:.0f} s; logs in {args.log_dir}")


if __name__ == "__main__":
    main()
