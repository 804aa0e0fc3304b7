"""Gradient methods: throughput against the backend's own batched input gradients, and callback cost per epoch.

Run: python bench/bench_gradients.py [--backend tensorflow|jax|torch] [--large]
(prints ratios measured in this one run; runs unchanged on a GPU machine)

1. For each gradient method: model-gradient rows per second it achieves (rows = probes x path points or
   noise samples), divided by the rows per second of that backend's plain compiled input gradient of the
   same model at the same batch size (TensorFlow: a `tf.function` GradientTape; JAX: `jax.jit(jax.grad)` of
   the model's stateless call; PyTorch: eager `torch.autograd.grad`, and `torch.compile` of it beside).
   Target: >= 0.8.
2. For the demo-sized models: the callback's time per logged epoch (every gradient method) divided by the
   time of one training epoch.
3. With --large: a 224x224x3 CNN of 8 convolutions at batch 256, integrated gradients on 64 probes x 50
   steps against the plain input gradient (meant for a GPU; slow on a CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--large", action="store_true", help="also the 224x224 CNN at batch 256")
    return parser.parse_args()


ARGS = _arguments()
os.environ["KERAS_BACKEND"] = ARGS.backend  # Keras fixes its backend when it is first imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

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


def plain_gradient(model, shape):
    """The backend's plain compiled input gradient of `model`: (batch, target) -> d out[target] / d batch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape), tf.TensorSpec((None,), tf.int32)])
        def grad(batch, t):
            with tf.GradientTape() as tape:
                tape.watch(batch)
                out = tf.gather(model(batch, training=False), t, axis=1, batch_dims=1)
            return tape.gradient(out, batch)

        return {"tf.function": lambda b, t: grad(b, t).numpy()}
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def selected(batch, trainable, non_trainable, t):
            out, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
            return jnp.take_along_axis(out, t[:, None], axis=1).sum()

        jitted = jax.jit(jax.grad(selected))

        def run(b, t):
            variables = ([v.value for v in model.trainable_variables],
                         [v.value for v in model.non_trainable_variables])
            return np.asarray(jitted(b, *variables, t))

        return {"jax.jit": run}
    import torch

    def eager(b, t):
        x = torch.as_tensor(b).requires_grad_(True)
        out = model(x, training=False).gather(1, torch.as_tensor(t, dtype=torch.long)[:, None]).sum()
        return torch.autograd.grad(out, [x])[0].numpy()

    compiled_grad = torch.compile(lambda x, t: torch.autograd.grad(
        model(x, training=False).gather(1, t[:, None]).sum(), [x])[0], dynamic=False)

    def compiled(b, t):
        x = torch.as_tensor(b).requires_grad_(True)
        return compiled_grad(x, torch.as_tensor(t, dtype=torch.long)).numpy()

    return {"eager": eager, "torch.compile": compiled}


def plain_gradient_rows_per_second(model, x, target):
    """Rows/s of each plain gradient variant the backend has; the first is the reference."""
    rates = {}
    for label, grad in plain_gradient(model, x.shape[1:]).items():
        def run():
            for start in range(0, len(x), BATCH):
                grad(x[start:start + BATCH], target[start:start + BATCH])

        try:
            rates[label] = len(x) / best_of(run)
        except Exception as error:  # torch.compile of a Keras model may not compile; say so and go on
            print(f"  ({label} failed: {type(error).__name__}: {str(error).splitlines()[0][:160]})")
    return rates


def method_rows(method, n):
    return n * method.rows_per_probe()


def bench_methods(label, model, shape, n_probes, configs, plain_batches=16):
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(n_probes,) + shape).astype(np.float32)
    probe_set = as_probe_set(probe)
    adapter = adapt(model, probe_set, batch_size=BATCH)
    target = np.argmax(adapter.predict([probe]), axis=1).astype(np.int32)
    big = rng.normal(size=(plain_batches * BATCH,) + shape).astype(np.float32)
    rates = plain_gradient_rows_per_second(model, big, np.resize(target, len(big)))
    reference, limit = next(iter(rates.items()))
    others = "".join(f", {k} {v / 1e3:,.0f} k rows/s" for k, v in list(rates.items())[1:])
    print(f"\n{label} [{keras.backend.backend()}]: plain input gradient ({reference}) {limit / 1e3:,.0f} k rows/s "
          f"(batch {BATCH}){others}")
    print(f"{'method':<22}{'probes':>8}{'rows':>10}{'seconds':>10}{'k rows/s':>11}{'ratio':>8}")
    for name, kwargs in configs:
        method = methods_lib.REGISTRY[name](**kwargs)
        method.setup(adapter, probe_set)
        n = n_probes if method.rows_per_probe() > 1 else len(big)
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


def cnn8_224():
    """8 convolutions at 224x224x3 (the GPU case of the benchmark)."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((224, 224, 3))]
    for i, width in enumerate((16, 16, 32, 32, 64, 64, 128, 128)):
        layers.append(keras.layers.Conv2D(width, 3, padding="same", activation="relu"))
        if i % 2 == 1:
            layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers)


def main():
    gradient_methods = [
        ("saliency", {}), ("gradient_x_input", {}), ("integrated_gradients", {"tolerance": None}),
        ("smoothgrad", {}),
    ]
    bench_methods("MLP 20-64-64-2, 64 probes", mlp(), (20,), 64, gradient_methods)
    bench_methods("MLP 20-64-64-2, 1024 probes", mlp(), (20,), 1024, gradient_methods)
    bench_methods("CNN 28x28x1, 64 probes", cnn(), (28, 28, 1), 64, gradient_methods + [("grad_cam", {})])
    bench_callback_cost()
    if ARGS.large:
        global BATCH
        BATCH = 256
        bench_methods("CNN 224x224x3, 8 convolutions, 64 probes", cnn8_224(), (224, 224, 3), 64,
                      [("integrated_gradients", {"steps": 50, "tolerance": None})], plain_batches=4)


if __name__ == "__main__":
    main()
