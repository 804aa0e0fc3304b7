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
4. With --ig-rows (alone: the sections above are skipped): integrated gradients at its defaults on the demo
   models, a small residual net (conv, batch norm, skips), keras.applications MobileNetV2 and ResNet50
   (weights=None, logits) and bench/bench_overhead.py's 32x32x3 CNN after 1, 2 and 3 epochs (--ig-images per
   epoch): model calls, gradient rows per probe (how many probes pass at the first pass, the rows' quantiles, the
   share of the rows the costliest tenth of the probes takes), the completeness check, CPU time, and the L1 error
   per probe against a many-node Gauss-Legendre integral without tolerance, relative to its L1 norm.
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
    parser.add_argument("--ig-rows", action="store_true",
                        help="only integrated gradients' rows, calls and error against a many-node reference")
    parser.add_argument("--ig-images", type=int, default=20_000,
                        help="training images per epoch of the 32x32x3 CNN in --ig-rows (bench_overhead's 20,000)")
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


def ig_rows(label, model, x, reference_steps, target=None):
    """Integrated gradients at its defaults on `x`: calls, gradient rows per probe, completeness, CPU time, and the
    L1 error against a `reference_steps`-node Gauss-Legendre integral."""
    from tb_xai.methods import IntegratedGradients

    probe_set = as_probe_set(x)
    adapter = adapt(model, probe_set)
    target = np.argmax(adapter.predict([x]), axis=1).astype(np.int32) if target is None else target
    reference = IntegratedGradients(steps=reference_steps, max_steps=reference_steps, tolerance=None)
    reference.setup(adapter, probe_set)
    (exact,) = reference.attribute([x], target)
    method = IntegratedGradients()
    method.setup(adapter, probe_set)
    method.attribute([x], target)  # tracing
    calls, per_probe = [], np.zeros(len(x))
    gradients, evaluate = adapter.gradients, method._evaluate
    adapter.gradients = lambda inputs, t: (calls.append(len(t)), gradients(inputs, t))[1]

    def counted(path, t, probes, alphas, base_targets=None):
        np.add.at(per_probe, probes, 1)
        return evaluate(path, t, probes, alphas, base_targets)

    method._evaluate = counted
    cpu = time.process_time()
    (attr,) = method.attribute([x], target)
    cpu = time.process_time() - cpu
    adapter.gradients = gradients
    del method._evaluate
    d = method.diagnostics()
    first = 2 * method.config()["panels"]
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    error = np.abs(flat(attr) - flat(exact)).sum(axis=1) / np.maximum(np.abs(flat(exact)).sum(axis=1), 1e-30)
    costly = np.sort(per_probe)[::-1][:max(1, len(x) // 10)].sum() / per_probe.sum()
    q = np.percentile(per_probe, [50, 90, 100])
    print(f"{label:<34}{len(x):>4} probes {len(calls):>4} calls {d['steps_mean']:6.1f} rows/probe (first pass "
          f"{np.mean(per_probe <= first):4.0%}, p50/p90/max {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}, "
          f"top tenth {costly:4.0%}); "
          f"over {d['probes_over_tolerance']}, CPU {cpu * 1e3:6.0f} ms; error median {np.median(error):.4f} "
          f"max {error.max():.4f} ({reference_steps} nodes)", flush=True)


def bench_ig_rows():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "demo"))
    sys.path.insert(0, os.path.dirname(__file__))
    import bench_overhead  # noqa: E402
    import digits as digits_demo  # noqa: E402
    import tabular as tabular_demo  # noqa: E402

    print("\nIntegrated gradients at its defaults: calls, gradient rows per probe (the baseline's rows included), "
          "error against a many-node reference")
    x, y, probe, _, _, _ = tabular_demo.breast_cancer(32)
    keras.utils.set_random_seed(0)
    model = tabular_demo.model()
    model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    ig_rows("demo MLP, 15 epochs", model, probe, 4096)
    x, y, probe, _ = digits_demo.digits(16)
    keras.utils.set_random_seed(0)
    model = digits_demo.model()
    model.fit(x, y, batch_size=64, epochs=15, verbose=0)
    ig_rows("demo digits CNN, 15 epochs", model, probe, 4096)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(
        keras.layers.Conv2D(8, 3, padding="same", bias_initializer="random_normal")(inputs)))
    for _ in range(2):
        r = keras.layers.Conv2D(8, 3, padding="same", bias_initializer="random_normal")(h)
        r = keras.layers.Conv2D(8, 3, padding="same", bias_initializer="random_normal")(
            keras.layers.ReLU()(keras.layers.BatchNormalization()(r)))
        h = keras.layers.ReLU()(keras.layers.Add()([h, keras.layers.BatchNormalization()(r)]))
    model = keras.Model(inputs, keras.layers.Dense(4, bias_initializer="random_normal")(
        keras.layers.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(3)
    ig_rows("residual net 8x8x3, untrained", model, rng.normal(size=(32, 8, 8, 3)).astype(np.float32), 2048)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10,
                                           classifier_activation=None)
    ig_rows("MobileNetV2 32x32x3, weights=None", model, rng.random((16, 32, 32, 3), dtype=np.float32), 256)
    model = keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=10, classifier_activation=None)
    ig_rows("ResNet50 64x64x3, weights=None", model, rng.random((8, 64, 64, 3), dtype=np.float32), 64)
    rng = np.random.default_rng(0)  # bench_overhead's CNN workload: its images, labels and probes
    x = rng.random((ARGS.ig_images, 32, 32, 3), dtype=np.float32)
    y = (x[:, :16, :16, 0].mean(axis=(1, 2)) * 40).astype(np.int64) % 10
    keras.utils.set_random_seed(0)
    model = bench_overhead.cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for epoch in (1, 2, 3):
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
        ig_rows(f"32x32x3 CNN, epoch {epoch}", model, x[:64], 256)


def main():
    if ARGS.ig_rows:
        bench_ig_rows()
        return
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
