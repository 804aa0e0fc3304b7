"""Token integrated gradients: throughput against the model's own batched gradient at the Embedding's output.

Run: python bench/bench_text.py [--backend tensorflow|jax|torch] [--probes 128]
(prints ratios measured in this one run)

The model: token ids (T=64, vocabulary 5,000) -> Embedding(32) -> Conv1D -> Conv1D -> global max pooling ->
Dense (ReLU and max pooling: a gradient that jumps along the path, the hard case for IG's refinement). The
reference is the backend's plain compiled gradient of the layers after the Embedding with respect
to its output (the embeddings), at the same rows per call as the method (TensorFlow: a `tf.function`
GradientTape; JAX: `jax.jit(jax.grad)` of the stateless call; PyTorch: eager autograd). Integrated gradients'
rows are probes x the path points it spent (`steps_mean`, refinement included); everything else it does
(embedding the probe and the baseline, the completeness check, reducing per token) counts against it.
Target: >= 0.8. Reference and method are timed alternately, best of three each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--probes", type=int, default=128)
    return parser.parse_args()


ARGS = _arguments()
os.environ["KERAS_BACKEND"] = ARGS.backend  # Keras fixes its backend when it is first imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tb_xai import text  # noqa: E402
from tb_xai.backend import adapt  # noqa: E402
from tb_xai.methods import IntegratedGradients  # noqa: E402
from tb_xai.probe import as_probe_set  # noqa: E402

V, T, D, BATCH = 5000, 64, 32, 1024


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T,), dtype="int32")
    embedded = keras.layers.Embedding(V, D, name="embedding")(inputs)
    head_in = keras.Input((T, D))
    h = keras.layers.Conv1D(64, 3, padding="same", activation="relu")(head_in)
    h = keras.layers.Conv1D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling1D()(h))
    head = keras.Model(head_in, h, name="head")
    return keras.Model(inputs, head(embedded)), head


def plain_embedding_gradient(head):
    """(embeddings, target) -> d head[target] / d embeddings, compiled as the backend compiles gradients."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None, T, D)), tf.TensorSpec((None,), tf.int32)])
        def grad(e, t):
            with tf.GradientTape() as tape:
                tape.watch(e)
                out = tf.gather(head(e, training=False), t, axis=1, batch_dims=1)
            return tape.gradient(out, e)

        return lambda e, t: grad(e, t).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def selected(e, trainable, non_trainable, t):
            out, _ = head.stateless_call(trainable, non_trainable, e, training=False)
            return jnp.sum(jnp.take_along_axis(out, t[:, None], axis=1))

        grad = jax.jit(jax.grad(selected))
        trainable = [v.value for v in head.trainable_variables]
        non_trainable = [v.value for v in head.non_trainable_variables]
        return lambda e, t: np.asarray(grad(e, trainable, non_trainable, t))
    import torch

    def grad(e, t):
        e = torch.as_tensor(e).requires_grad_(True)
        out = head(e, training=False)
        (g,) = torch.autograd.grad(out.gather(1, torch.as_tensor(t, dtype=torch.int64)[:, None]).sum(), [e])
        return g.detach().numpy()

    return grad


def timed(fn, repeats=3):
    fn()  # warm-up: tracing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    model, head = build()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, size=(ARGS.probes, T)).astype(np.int32)
    for row, length in enumerate(rng.integers(T // 4, T + 1, size=ARGS.probes)):
        ids[row, length:] = 0
    target = (np.arange(ARGS.probes) % 2).astype(np.int32)
    probe = as_probe_set(ids)
    adapter = adapt(model, probe, batch_size=BATCH)
    text.resolve(adapter, probe)
    configurations = {
        "integrated_gradients, 32 path points, no refinement": IntegratedGradients(steps=32, tolerance=None),
        "integrated_gradients, default (refined to 0.5% completeness)": IntegratedGradients(),
    }
    for method in configurations.values():
        method.setup(adapter, adapter.probe)

    grad = plain_embedding_gradient(head)
    embeddings = rng.normal(size=(BATCH, T, D)).astype(np.float32)
    rows_target = (np.arange(BATCH) % 2).astype(np.int32)
    reference = []
    ours = {name: [] for name in configurations}
    for _ in range(3):  # alternately: the shared machine's load falls on all alike
        reference.append(timed(lambda: grad(embeddings, rows_target), repeats=1))
        for name, method in configurations.items():
            ours[name].append(timed(lambda: method.attribute(adapter.probe.inputs, target), repeats=1))
    reference_rate = BATCH / min(reference)
    print(f"backend {keras.backend.backend()}; {ARGS.probes} probes, T={T}, D={D}, {BATCH} rows per call")
    print(f"plain gradient at the embedding: {reference_rate:,.0f} rows/s")
    for name, method in configurations.items():
        steps = method.diagnostics().get("steps_mean", method.steps)
        rate = ARGS.probes * steps / min(ours[name])
        print(f"{name}: {rate:,.0f} rows/s ({steps:.1f} path points per probe, {min(ours[name]) * 1e3:.0f} ms for "
              f"{ARGS.probes} probes); ratio (target >= 0.8): {rate / reference_rate:.2f}")


if __name__ == "__main__":
    main()
