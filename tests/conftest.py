"""Shared fixtures: tiny real models trained once per test run with the callback (the pytest-xdist workers
share each training: see `_trained_once`).

Each run writes a real log directory next to `keras.callbacks.TensorBoard(log_dir=same)`, the way users
run it, so every reader, plugin and browser test reads event files the callback actually wrote.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

EPOCHS = 20


@dataclasses.dataclass
class TrainedRun:
    log_dir: str
    model: object  # the trained model (in the other xdist workers, loaded from what the training saved)
    callback: object  # None in the xdist workers that reuse another's training
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
    # 256, not fewer: up to 4,096 sampled model rows per probe (here 24 background rows x 171 coalitions) a
    # tabular probe gets the kernel-ridge surrogate, which costs this tiny MLP far more than its model calls.
    "kernel_shap": {"samples": 256},
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
    callback_kwargs.setdefault("max_overhead", None)  # every epoch: the fixtures' epochs take milliseconds
    callback = tb_xai.AttributionCallback(log_dir, probe, labels=labels, methods=budgeted(methods),
                                          **callback_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[callback, keras.callbacks.TensorBoard(log_dir)])
    return callback


def _trained_once(tmp_path_factory, name, build, x, y, probe, labels, methods, **callback_kwargs):
    """`build()`'s model trained by `_train` once per test run, its log directory shared by every xdist worker.

    The first worker to ask trains it in a directory all workers share (the session's base temp directory) and
    saves the trained model there; the others wait on a file lock, then read the same log directory and load
    the saved model. Without xdist the one process trains it.
    """
    import keras

    if "PYTEST_XDIST_WORKER" not in os.environ:
        log_dir = str(tmp_path_factory.mktemp(name))
        model = build()
        callback = _train(log_dir, model, x, y, probe, labels, methods, EPOCHS, **callback_kwargs)
        return TrainedRun(log_dir, model, callback, methods, x, y, probe, labels,
                          callback_kwargs.get("feature_names"), callback_kwargs.get("class_names"))
    root = tmp_path_factory.getbasetemp().parent
    directory, callback = root / name, None
    log_dir, saved = directory / "log", directory / "model.keras"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (directory / "done").exists():  # none yet, or a worker's training failed: train here
            shutil.rmtree(directory, ignore_errors=True)
            log_dir.mkdir(parents=True)
            model = build()
            callback = _train(str(log_dir), model, x, y, probe, labels, methods, EPOCHS, **callback_kwargs)
            model.save(saved)
            (directory / "done").touch()
    if callback is None:
        model = keras.saving.load_model(saved)
    return TrainedRun(str(log_dir), model, callback, methods, x, y, probe, labels,
                      callback_kwargs.get("feature_names"), callback_kwargs.get("class_names"))


@pytest.fixture(scope="session")
def tabular_run(tmp_path_factory, tabular_data) -> TrainedRun:
    """A never-called Sequential MLP on breast cancer, 20 epochs, every tabular method (fixture budgets)."""
    import keras

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ])

    x, y, feature_names, class_names = tabular_data
    return _trained_once(tmp_path_factory, "tabular_run", build, x, y, x[:24], y[:24], methods_for("tabular"),
                         feature_names=feature_names, class_names=class_names)


@pytest.fixture(scope="session")
def image_run(tmp_path_factory, digits_data) -> TrainedRun:
    """A functional CNN on 8x8 grayscale digits, 20 epochs, every image method (fixture budgets)."""
    import keras

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        outputs = keras.layers.Dense(10, activation="softmax")(h)
        return keras.Model(inputs, outputs)

    x, y = digits_data
    return _trained_once(tmp_path_factory, "image_run", build, x, y, x[:12], y[:12], methods_for("image"),
                         class_names=[str(i) for i in range(10)])


#: The slowest files (most seconds, measured), started first, slowest first. pytest-xdist's `--dist loadfile`
#: gives each worker a whole file at a time; by default it hands them out by test count, so a slow file with few
#: tests (the backend matrix, the distributed runs) could start last and run alone while the other worker
#: idles. Longest first, the files left at the end are short. Every other file follows, by test count.
SLOWEST_FIRST = [
    "test_backends.py", "test_frontend.py", "test_demos.py", "test_distributed.py", "test_findings_frontend.py",
    "test_run_lock.py", "test_plugin.py", "test_callback.py", "test_real_models.py", "test_plot.py",
    "test_methods_architectures.py", "test_text_models.py", "test_text_gradients.py", "test_quality.py",
    "test_packaging.py", "test_text_demo.py",
]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below, not by test count
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    counts = {}
    for item in items:
        counts[item.path.name] = counts.get(item.path.name, 0) + 1

    def rank(item):
        name = item.path.name
        return (SLOWEST_FIRST.index(name), 0) if name in SLOWEST_FIRST else (len(SLOWEST_FIRST), -counts[name])

    items.sort(key=rank)  # stable: a file's tests keep their order
