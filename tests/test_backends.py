"""The same saved models give the same attributions on TensorFlow, JAX, PyTorch and tf_keras (Keras 2).

The Keras backend is fixed when keras is imported, so each backend runs in its own process
(tests/backend_matrix.py). The JAX and PyTorch processes run with TensorFlow made unimportable: they show the
callback, every method and tb_xai.load work without it. tf_keras gets the same architectures with the same
weights (it cannot read a Keras 3 .keras file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backend_matrix import METHODS

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch", "tf_keras")
# Gradient methods within 1e-4 of the largest attribution; seeded sampling methods draw the same samples on
# every backend, so they differ by float error only and are held to the same bound.
RELATIVE = 1e-4
#: Results that measure the machine, not the model: compared with nothing across backends.
MACHINE_FIGURES = ("tabular/predict_rates",)


def _start(backend: str, mode: str, directory: str) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow" if backend == "tf_keras" else backend,
           "TF_CPP_MIN_LOG_LEVEL": "3", "TB_XAI_BLOCK_TENSORFLOW": "1" if backend in ("jax", "torch") else "0"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    if backend == "tf_keras":
        env["TF_USE_LEGACY_KERAS"] = "1"
    return subprocess.Popen([sys.executable, os.path.join(HERE, "backend_matrix.py"), mode, directory],
                            env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(backend: str, process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise AssertionError(f"the {backend} backend run failed:\n{out[-6000:]}")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("backends"))
    # The other backends only read the saved models: they start beside the TensorFlow run (importing their
    # framework meanwhile) and wait until it has saved them.
    running = {"tensorflow": _start("tensorflow", "save", directory)}
    running.update({b: _start(b, "explain", directory) for b in BACKENDS[1:]})
    try:
        for backend, process in running.items():
            _finish(backend, process)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    results = {b: dict(np.load(os.path.join(directory, f"{b}.npz"))) for b in BACKENDS}
    runs = {}
    for b in BACKENDS:
        with open(os.path.join(directory, f"{b}.json")) as f:
            runs[b] = json.load(f)
    return results, runs


def test_every_method_ran_on_every_backend(matrix):
    results, _ = matrix
    expected = sorted(results["tensorflow"])
    assert {f"tabular/{m}" for m in ("saliency", "kernel_shap", "lime")} <= set(expected)
    assert {f"residual/{m}" for m in METHODS} <= set(expected)
    gradient_methods = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "expected_gradients")
    assert {f"text/{m}" for m in gradient_methods + ("kernel_shap", "lime", "occlusion")} <= set(expected)
    for backend in BACKENDS[1:]:
        assert sorted(results[backend]) == expected, backend


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_same_attributions_as_tensorflow(matrix, backend):
    results, _ = matrix
    reference = results["tensorflow"]
    for key, want in reference.items():
        if key in MACHINE_FIGURES:
            continue
        got = results[backend][key]
        assert got.shape == want.shape, key
        scale = float(np.abs(want).max())
        assert scale > 0, f"{key}: the TensorFlow attributions are all zero, so the comparison would be empty"
        error = float(np.abs(got - want).max())
        assert error <= RELATIVE * scale, f"{backend} {key}: max difference {error:.3g} over max |value| {scale:.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_predict_rate_is_measured_at_each_call_size_on_every_backend(matrix, backend):
    rates = matrix[0][backend]["tabular/predict_rates"]
    assert rates[:, 0].tolist() == [1024, 2048, 4096]  # the adapter's batch size up to the largest asked
    assert np.isfinite(rates[:, 1]).all() and (rates[:, 1] > 0).all(), rates


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_blended_in_the_compiled_call_equal_rows_built_on_the_host(matrix, backend):
    results, _ = matrix
    blended, host = results[backend]["tabular/predict_blend"], results[backend]["tabular/predict_blend_host"]
    assert blended.shape == host.shape == (40, 3)  # 5 probes x 8 rows, 3 classes
    np.testing.assert_allclose(blended, host, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_callback_trains_and_logs_every_method(matrix, backend):
    _, runs = matrix
    run = runs[backend]
    assert run["failures"] == []
    assert run["last_predictions_error"] < 1e-5
    assert run["recompiled"] == {}, run["compiled"]
    if backend != "torch":  # PyTorch runs eagerly
        assert run["compiled"].get("predict", 0) >= 1 and run["compiled"].get("gradients", 0) >= 1, run["compiled"]
    assert run["steps"] == {m: [0, 1] for m in METHODS}
    assert run["shapes"]["saliency"] == [2, 4, 8, 8, 1]
    assert run["shapes"]["grad_cam"] == [2, 4, 8, 8]
    assert run["tensorflow_imported"] == (backend in ("tensorflow", "tf_keras"))
