"""Attributions of a small CNN on handwritten digits while it trains: saliency, integrated gradients,
Grad-CAM, KernelSHAP and LIME on 8x8 grayscale images.

A two-layer CNN learns scikit-learn's digits (8x8 grayscale, 10 classes). At every epoch the callback
explains 16 held-out digits; SHAP and LIME switch 2x2 superpixels on and off (grayscale works as is: no
RGB conversion). TensorBoard then shows each digit's maps sharpening epoch by epoch next to its predicted
probabilities, and whether the methods agree.

Run (about a minute on 2 CPU cores; offline):
    python demo/digits.py --log-dir runs/digits
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def digits(probes: int, seed: int = 0):
    """Images (n, 8, 8, 1) in [0, 1] with their digit labels: training rows and held-out probes."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, held_out = order[:-probes], order[-probes:]
    return x[train], y[train], x[held_out], y[held_out]


def methods(quick: bool = False):
    """The demo's methods: saliency, integrated gradients, Grad-CAM, and KernelSHAP and LIME over 2x2 superpixels."""
    from tb_xai.methods import IntegratedGradients, KernelShap, Lime, Segmentation

    superpixels = Segmentation("grid", patch=2)  # 16 superpixels of 2x2 pixels
    return [
        "saliency",
        IntegratedGradients(steps=32),
        "grad_cam",
        KernelShap(samples=128 if quick else 512, segmentation=superpixels, background=0.0),
        Lime(samples=200 if quick else 1000, segmentation=superpixels, background=0.0),
    ]


def model():
    """The demo's CNN (two 3x3 convolutions, global average pooling, softmax), compiled."""
    import keras

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)  # slow enough to learn that the maps visibly form
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-dir", default=os.path.join("runs", "digits"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="fewer SHAP/LIME samples (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import tb_xai

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    x_train, y_train, probe, labels = digits(args.probes, args.seed)
    net = model()
    # Every epoch logged: these epochs take tens of milliseconds, which the callback's default 5% budget
    # (max_overhead) would pay for only one logged epoch in several of.
    callback = tb_xai.AttributionCallback(args.log_dir, probe, labels=labels, methods=methods(args.quick),
                                          class_names=[str(d) for d in range(10)],
                                          max_overhead=None)
    history = net.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0,
                      callbacks=[callback, keras.callbacks.TensorBoard(args.log_dir)])

    run = tb_xai.load(args.log_dir)
    predicted = run.predictions().argmax(axis=-1)
    print(f"\ntraining accuracy {history.history['accuracy'][-1]:.0%}; probes right per epoch: "
          + " ".join(str(int(n)) for n in (predicted == run.labels()).sum(axis=1)) + f" of {len(labels)}")
    print("seconds per method at the last epoch: "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in callback.timings.items()))
    changed = np.flatnonzero((predicted[0] != run.labels()) & (predicted[-1] == run.labels()))
    print("\nHow far the methods agree at the last epoch (Spearman rank correlation of the mean maps):")
    for pair in run.agreement():
        print(f"  {' vs '.join(pair['methods']):40s} {pair['spearman'][-1]:+.2f}")
    print("\nWhat to look at: TensorBoard's Attributions tab, run 'digits/xai'. The evolution filmstrip shows the "
          "mean map per epoch; pick a probe to see its maps sharpen next to its predicted probabilities.")
    if changed.size:
        print(f"  Probes {', '.join(map(str, changed[:5]))} were misclassified at epoch 0 and right at the last "
              "epoch: watch their maps move onto the strokes that tell the digits apart.")
    print(f"\nDone in {time.perf_counter() - start:.0f} s; logs in {args.log_dir}")


if __name__ == "__main__":
    main()
