"""One process of the distributed-training tests (tests/test_distributed.py).

    python distributed_worker.py mwms LOG_DIR OUT INDEX PORT0 PORT1
        tf_keras under MultiWorkerMirroredStrategy, worker INDEX of two on 127.0.0.1; trains with the callback
        into LOG_DIR and writes OUT.npz (the final weights) and OUT.json (epoch times, the callback's time).
    python distributed_worker.py replay LOG_DIR OUT
        one process, no strategy: the same architecture with OUT.npz's weights (waited for, so this process
        can start beside the workers), explained directly; writes OUT_replay.npz to compare with the last
        logged step.
    python distributed_worker.py jax_data_parallel LOG_DIR OUT
        Keras 3 on JAX with keras.distribution.DataParallel over the process's devices (two CPU devices with
        XLA_FLAGS=--xla_force_host_platform_device_count=2); trains with the callback into LOG_DIR.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

METHODS = {"saliency": {}, "integrated_gradients": {"steps": 8}, "grad_cam": {}, "kernel_shap": {"samples": 64}}
EPOCHS = 3


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    return x, y


def build(keras):
    """A CNN with BatchNorm: under MultiWorkerMirroredStrategy its moving statistics are read across workers."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Activation("relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])


def methods():
    from tb_xai import methods as methods_lib

    return [methods_lib.REGISTRY[name](**config) for name, config in METHODS.items()]


def train(keras, model, log_dir, out):
    import tb_xai

    x, y = data()
    callback = tb_xai.AttributionCallback(log_dir, x[:6], labels=y[:6], methods=methods(), target="label")
    epoch_times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.start)

    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[callback, Clock()])
    np.savez(out + ".partial.npz", *[np.asarray(w) for w in model.get_weights()])
    os.replace(out + ".partial.npz", out + ".npz")  # whole when it appears: the replay waits for it
    with open(out + ".json", "w") as f:
        json.dump({"epoch_seconds": epoch_times, "callback_seconds": sum(callback.timings.values())}, f)


def mwms(log_dir, out, index, port0, port1):
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
        "task": {"type": "worker", "index": int(index)},
    })
    import tensorflow as tf
    import tf_keras

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build(tf_keras)
    train(tf_keras, model, log_dir, out)


def replay(log_dir, out):
    import tf_keras

    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    model = build(tf_keras)
    deadline = time.monotonic() + 400
    while not os.path.exists(out + ".npz"):  # the trained weights, once the worker has saved them
        if time.monotonic() > deadline:
            sys.exit(f"{out}.npz never appeared")
        time.sleep(0.1)
    with np.load(out + ".npz") as weights:
        model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    x, y = data()
    probe = as_probe_set(x[:6], labels=y[:6])
    adapter = adapt(model, probe, binary_classes=True)
    results = {"predictions": adapter.predict(adapter.probe.inputs)}
    for method in methods():
        method.setup(adapter, adapter.probe)
        (results[method.name],) = method.attribute(adapter.probe.inputs, y[:6])
    np.savez(out + "_replay.npz", **results)


def jax_data_parallel(log_dir, out):
    import jax
    import keras

    devices = jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    train(keras, build(keras), log_dir, out)
    with open(out + ".json") as f:
        summary = json.load(f)
    summary["devices"] = len(devices)
    with open(out + ".json", "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"mwms": mwms, "replay": replay, "jax_data_parallel": jax_data_parallel}[mode](*args)
