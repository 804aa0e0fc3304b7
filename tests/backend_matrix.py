"""Runs in a subprocess under one Keras backend (fixed at import) for tests/test_backends.py.

    python backend_matrix.py save DIR      builds the matrix's models and probes and saves them (.keras, .npy),
                                           then explains them as `explain` does
    python backend_matrix.py explain DIR   loads them under $KERAS_BACKEND (once `save` has written them: it
                                           may start beside `save`), writes every method's attributions
                                           to DIR/<backend>.npz, trains a model with the callback for two
                                           epochs and writes what tb_xai.load read back to DIR/<backend>.json

With TF_USE_LEGACY_KERAS=1, `explain` builds the same architectures in tf_keras (Keras 2 cannot read a
Keras 3 .keras file), sets the saved weights, and writes DIR/tf_keras.npz and .json.

With TB_XAI_BLOCK_TENSORFLOW=1 any import of tensorflow fails, to show a backend runs without it.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import time

if os.environ.get("TB_XAI_BLOCK_TENSORFLOW") == "1":
    import importlib.machinery

    class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """TensorFlow looks uninstalled: a spec without origin (probes see no files), and importing fails."""

        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tensorflow", "tf_keras"):
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked: this run must not import it)",
                                      name=spec.name)

        def exec_module(self, module):
            raise AssertionError("unreachable")

    sys.meta_path.insert(0, _Absent())

import numpy as np  # noqa: E402

import models  # noqa: E402  (after the block above: it imports keras)

METHODS = models.QUICK_METHODS


def legacy() -> bool:
    return os.environ.get("TF_USE_LEGACY_KERAS") == "1"


def keras_module():
    """Keras 3, or tf_keras under TF_USE_LEGACY_KERAS=1."""
    if legacy():
        import tf_keras

        return tf_keras
    import keras

    return keras


def mlp():
    keras = keras_module()
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="tanh"),
                             keras.layers.Dense(3, activation="softmax")])


def residual_backbone_classifier(shape=(8, 8, 3), n_classes=3):
    """A nested residual backbone with BatchNorm inside a Sequential classifier (logits head)."""
    keras = keras_module()
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    h = keras.layers.BatchNormalization(name="stem_bn")(h)
    h = keras.layers.Activation("relu")(h)
    r = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block_conv")(h)
    h = keras.layers.Activation("relu", name="block_out")(keras.layers.Add()([h, r]))
    backbone = keras.Model(inputs, h, name="backbone")
    return keras.Sequential([keras.Input(shape), backbone, keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(n_classes)])


def text_classifier(vocabulary=20, positions=7):
    """Token ids -> a mask_zero Embedding -> tanh Dense -> masked mean -> logits: explained at the Embedding."""
    keras = keras_module()
    return keras.Sequential([keras.Input((positions,), dtype="int32"),
                             keras.layers.Embedding(vocabulary, 6, mask_zero=True, name="words"),
                             keras.layers.Dense(8, activation="tanh"), keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(3)])


def text_probe():
    ids = np.random.default_rng(4).integers(1, 20, size=(4, 7)).astype(np.int32)
    ids[0, 3:] = ids[2, 5:] = 0
    return ids


def save(directory: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    built = {"tabular": (mlp(), models.random_inputs((6,), 5))}
    keras.utils.set_random_seed(3)
    built["residual"] = (residual_backbone_classifier(), models.random_inputs((8, 8, 3), 4, seed=2))
    # BatchNorm statistics that are not the identity, so inference mode matters.
    bn = built["residual"][0].get_layer("backbone").get_layer("stem_bn")
    bn.moving_mean.assign(np.full(6, 0.1, np.float32))
    bn.moving_variance.assign(np.full(6, 2.0, np.float32))
    keras.utils.set_random_seed(5)
    built["text"] = (text_classifier(), text_probe())
    for name, (model, probe) in built.items():
        model.save(os.path.join(directory, f"{name}.keras"))
        np.savez(os.path.join(directory, f"{name}_weights.npz"), *model.get_weights())
        np.save(os.path.join(directory, f"{name}.npy"), probe)
    open(os.path.join(directory, SAVED), "w").close()
    explain(directory)


#: Written by `save` once every model, its weights and probe are on disk.
SAVED = "saved"


def wait_for_save(directory: str, timeout: float = 500.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(directory, SAVED)):
        if time.monotonic() > deadline:
            sys.exit(f"the models were never saved in {directory}")
        time.sleep(0.1)


def explain(directory: str) -> None:
    import keras

    from tb_xai import methods as methods_lib, text
    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    backend = "tf_keras" if legacy() else keras.backend.backend()
    results = {}
    for name, build in (("tabular", mlp), ("residual", residual_backbone_classifier), ("text", text_classifier)):
        if legacy():
            model = build()
            with np.load(os.path.join(directory, f"{name}_weights.npz")) as weights:
                model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
        else:
            model = keras.saving.load_model(os.path.join(directory, f"{name}.keras"))
        x = np.load(os.path.join(directory, f"{name}.npy"))
        probe = as_probe_set(x)
        adapter = adapt(model, probe)
        # Token ids feeding an Embedding: explained at its output. A removed token is the out-of-vocabulary id 1:
        # removing every token by masking it (id 0) leaves this masked mean undefined.
        text.resolve(adapter, probe, text.TextArguments(mask_id=1))
        target = np.arange(len(x)) % adapter.n_outputs
        results[f"{name}/predict"] = adapter.predict(probe.inputs)
        if name == "tabular":  # rows blended inside the compiled call, and the same rows built here
            rng = np.random.default_rng(0)
            keep = rng.random((len(x), 8) + x.shape[1:]) < 0.5
            removed = rng.normal(size=x.shape).astype(np.float32)
            results["tabular/predict_blend"] = adapter.predict_blend(keep, x, removed, batch_size=16)
            rows = np.where(keep, x[:, None], removed[:, None]).reshape((-1,) + x.shape[1:])
            results["tabular/predict_blend_host"] = adapter.predict([rows])
            # The compiled predict's measured rate by call size (what KernelSHAP and LIME pick their call size by).
            results["tabular/predict_rates"] = np.array(sorted(adapter.predict_rates(probe.inputs, 4096).items()))
        modality = probe.modality(0)
        for method_name, config in METHODS.items():
            cls = methods_lib.REGISTRY[method_name]
            if modality not in cls.modalities or (name == "text" and method_name == "grad_cam"):
                continue  # the text classifier has no convolution for Grad-CAM
            method = cls(**config)
            method.setup(adapter, adapter.probe)
            (values,) = method.attribute(adapter.probe.inputs, target)
            results[f"{name}/{method_name}"] = values
    np.savez(os.path.join(directory, f"{backend}.npz"), **results)
    train(directory, backend)


def compiled_functions(adapter) -> dict:
    """How many times each of the adapter's compiled functions was traced (PyTorch runs eagerly: none)."""
    functions = {"predict": getattr(adapter, "_predict_fn", None), "gradients": getattr(adapter, "_gradients_fn", None),
                 "predict_blend": getattr(adapter, "_blend_fn", None),
                 **{f"layer {k}": f for k, f in getattr(adapter, "_layer_fns", {}).items()}}
    counts = {}
    for name, fn in functions.items():
        if hasattr(fn, "_cache_size"):  # jax.jit
            counts[name] = int(fn._cache_size())
        elif hasattr(fn, "experimental_get_tracing_count"):  # tf.function
            counts[name] = int(fn.experimental_get_tracing_count())
    return counts


def train(directory: str, backend: str) -> None:
    """Two epochs of a never-called Sequential CNN with the callback, read back with tb_xai.load."""
    import tb_xai
    from tb_xai import methods as methods_lib

    keras = keras_module()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    model = keras.Sequential([
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    log_dir = os.path.join(directory, f"run_{backend}")
    methods = [methods_lib.REGISTRY[name](**config) for name, config in METHODS.items()]
    callback = tb_xai.AttributionCallback(log_dir, x[:4], labels=y[:4], methods=methods, target="label")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    # Explaining the trained model again compiles nothing new: no retracing between epochs.
    adapter = callback._adapter
    before = compiled_functions(adapter)
    for method in callback.methods:
        method.attribute(adapter.probe.inputs, y[:4])
    recompiled = {k: v for k, v in compiled_functions(adapter).items() if v != before.get(k)}
    run = tb_xai.load(log_dir)
    # The last logged predictions are the trained model's: the adapter reads the weights training left.
    after = model.predict(x[:4], verbose=0)
    summary = {
        "compiled": before,
        "recompiled": recompiled,
        "last_predictions_error": float(np.abs(run.predictions()[-1] - after).max()),
        "failures": [list(map(str, f)) for f in run.failures()],
        "steps": {m: [int(s) for s in run.steps(m)] for m in run.methods},
        "shapes": {m: list(run.attributions(m).shape) for m in run.methods},
        "tensorflow_imported": any(m.split(".")[0] == "tensorflow" for m in sys.modules),
    }
    with open(os.path.join(directory, f"{backend}.json"), "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    mode, directory = sys.argv[1], sys.argv[2]
    if mode == "explain":
        keras_module()  # imported (models imported keras 3) before the wait
        wait_for_save(directory)
    {"save": save, "explain": explain}[mode](directory)
