"""Shared fixtures: tiny real models trained once per test session with the callback.

Each run writes a real log directory next to `keras.callbacks.TensorBoard(log_dir=same)`, the way users
run it, so every reader, plugin and browser test reads event files the callback actually wrote.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

EPOCHS = 20


@dataclasses.dataclass
class TrainedRun:
    log_dir: str
    model: object
    callback: object
    methods: list
    x_train: np.ndarray
    y_train: np.ndarray
    probe: np.ndarray
    labels: np.ndarray
    feature_names: list = None
    class_names: list = None


#: Budgets for the session fixtures' methods: enough for every reader, plugin and browser test (shapes,
#: steps, ranks) at a fraction of the defaults' cost. The defaults run in test_default_budgets.py.
FIXTURE_BUDGETS = {
    "integrated_gradients": {"steps": 8, "max_steps": 32},
    "smoothgrad": {"samples": 8},
    "expected_gradients": {"samples": 16},
    "kernel_shap": {"samples": 64},
    "lime": {"samples": 200},
}


def methods_for(modality: str) -> list:
    """Every registered method that explains `modality` inputs, with its default configuration."""
    from tb_xai.methods import REGISTRY

    return [name for name, cls in REGISTRY.items() if modality in cls.modalities]


def budgeted(names: list) -> list:
    """The methods `names`, configured with `FIXTURE_BUDGETS` (their logged names unchanged)."""
    from tb_xai.methods import REGISTRY

    return [REGISTRY[name](**FIXTURE_BUDGETS.get(name, {})) for name in names]


@pytest.fixture(scope="session")
def tabular_data():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x, data.target.astype(np.int64), [str(n) for n in data.feature_names], [str(n) for n in data.target_names]


@pytest.fixture(scope="session")
def digits_data():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # (n, 8, 8, 1) grayscale
    return x, data.target.astype(np.int64)


def _train(log_dir, model, x, y, probe, labels, methods, epochs, **callback_kwargs):
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    callback = tb_xai.AttributionCallback(log_dir, probe, labels=labels, methods=budgeted(methods),
                                          **callback_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[callback, keras.callbacks.TensorBoard(log_dir)])
    return callback


@pytest.fixture(scope="session")
def tabular_run(tmp_path_factory, tabular_data) -> TrainedRun:
    """A never-called Sequential MLP on breast cancer, 20 epochs, every tabular method (fixture budgets)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y, feature_names, class_names = tabular_data
    log_dir = str(tmp_path_factory.mktemp("tabular_run"))
    model = keras.Sequential([
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    methods = methods_for("tabular")
    probe, labels = x[:24], y[:24]
    callback = _train(log_dir, model, x, y, probe, labels, methods, EPOCHS,
                      feature_names=feature_names, class_names=class_names)
    return TrainedRun(log_dir, model, callback, methods, x, y, probe, labels, feature_names, class_names)


@pytest.fixture(scope="session")
def image_run(tmp_path_factory, digits_data) -> TrainedRun:
    """A functional CNN on 8x8 grayscale digits, 20 epochs, every image method (fixture budgets)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = digits_data
    log_dir = str(tmp_path_factory.mktemp("image_run"))
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    methods = methods_for("image")
    probe, labels = x[:12], y[:12]
    callback = _train(log_dir, model, x, y, probe, labels, methods, EPOCHS,
                      class_names=[str(i) for i in range(10)])
    return TrainedRun(log_dir, model, callback, methods, x, y, probe, labels, None, [str(i) for i in range(10)])
