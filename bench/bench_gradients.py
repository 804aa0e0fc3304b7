"""Gradient methods: throughput against the model's own batched input gradients, and callback cost per epoch.

Run: python bench/bench_gradients.py   (CPU; prints ratios measured in this one run)

1. For each gradient method: model-gradient rows per second it achieves (rows = probes x path points or
   noise samples), divided by the rows per second of a plain compiled GradientTape input-gradient of the
   same model at the same batch size. Target: >= 0.8.
2. For the demo-sized models: the callback's time per logged epoch (every gradient method) divided by the
   time of one training epoch.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tb_xai  # noqa: E402
from tb_xai import methods as methods_lib  # noqa: E402
from tb_xai.backend import adapt  # noqa: E402
from tb_xai.probe import as_probe_set  # noqa: E402

BATCH = 1024


def best_of(fn, repeats=3):
    fn()  # warm-up: tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plain_gradient_rows_per_second(model, x, target):
    @tf.function(input_signature=[tf.TensorSpec((None,) + x.shape[1:]), tf.TensorSpec((None,), tf.int32)])
    def grad(batch, t):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            out = tf.gather(model(batch, training=False), t, axis=1, batch_dims=1)
        return tape.gradient(out, batch)

    def run():
        for start in range(0, len(x), BATCH):
            grad(x[start:start + BATCH], target[start:start + BATCH]).numpy()

    return len(x) / best_of(run)


def method_rows(method, n):
    return n * method.rows_per_probe()


def bench_methods(label, model, shape, n_probes, configs):
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(n_probes,) + shape).astype(np.float32)
    probe_set = as_probe_set(probe)
    adapter = adapt(model, probe_set, batch_size=BATCH)
    target = np.argmax(adapter.predict([probe]), axis=1).astype(np.int32)
    big = rng.normal(size=(16 * BATCH,) + shape).astype(np.float32)
    limit = plain_gradient_rows_per_second(model, big, np.resize(target, len(big)))
    print(f"\n{label}: plain compiled input-gradient throughput {limit / 1e3:,.0f} k rows/s (batch {BATCH})")
    print(f"{'method':<22}{'probes':>8}{'rows':>10}{'seconds':>10}{'k rows/s':>11}{'ratio':>8}")
    for name, kwargs in configs:
        method = methods_lib.REGISTRY[name](**kwargs)
        method.setup(adapter, probe_set)
        n = n_probes if method.rows_per_probe() > 1 else 16 * BATCH
        inputs = [probe] if n == n_probes else [big[:n]]
        t = target if n == n_probes else np.resize(target, n)
        seconds = best_of(lambda: method.attribute(inputs, t))
        rows = method_rows(method, n)
        print(f"{name:<22}{n:>8}{rows:>10}{seconds:>10.3f}{rows / seconds / 1e3:>11,.0f}"
              f"{rows / seconds / limit:>8.2f}")


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2, activation="softmax")])


def cnn(shape=(28, 28, 1)):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape), keras.layers.Conv2D(16, 3, activation="relu"),
                             keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])


def bench_callback_cost():
    from sklearn.datasets import load_breast_cancer, load_digits

    print("\nCallback cost per logged epoch / one training epoch (every gradient method, demo-sized models)")
    cases = []
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    cases.append(("breast cancer MLP, 32 probes", lambda: keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2, activation="softmax")]),
        x, y, x[:32], [m for m in methods_lib.REGISTRY if m != "grad_cam" and methods_lib.REGISTRY[m].requires_gradients]))
    digits = load_digits()
    xi = (digits.images / 16.0).astype(np.float32)[..., None]
    cases.append(("digits CNN, 32 probes", lambda: cnn((8, 8, 1)), xi, digits.target, xi[:32],
                  [m for m in methods_lib.REGISTRY if methods_lib.REGISTRY[m].requires_gradients]))
    for label, build, x, y, probe, names in cases:
        epochs = 6
        timings = {}
        for with_callback in (False, True):
            keras.utils.set_random_seed(0)
            model = build()
            model.compile("adam", "sparse_categorical_crossentropy")
            callbacks = [tb_xai.AttributionCallback(tempfile.mkdtemp(), probe, methods=names)] if with_callback else []
            epoch_times = []

            class Clock(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.start = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    epoch_times.append(time.perf_counter() - self.start)

            # The clock runs last, so with the callback its epoch time includes the callback's work.
            model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks + [Clock()])
            timings[with_callback] = np.median(epoch_times[1:])  # epoch 0 includes tracing
        cost = timings[True] - timings[False]
        print(f"{label:<32} epoch {timings[False] * 1e3:7.1f} ms, callback {cost * 1e3:7.1f} ms, "
              f"ratio {cost / timings[False]:.2f}  ({', '.join(names)})")


def main():
    gradient_methods = [
        ("saliency", {}), ("gradient_x_input", {}), ("integrated_gradients", {"tolerance": None}),
        ("smoothgrad", {}),
    ]
    bench_methods("MLP 20-64-64-2, 64 probes", mlp(), (20,), 64, gradient_methods)
    bench_methods("MLP 20-64-64-2, 1024 probes", mlp(), (20,), 1024, gradient_methods)
    bench_methods("CNN 28x28x1, 64 probes", cnn(), (28, 28, 1), 64, gradient_methods + [("grad_cam", {})])
    bench_callback_cost()


if __name__ == "__main__":
    main()
