"""Integrated gradients' adaptive panels: few model calls per step on a small model, completeness on residual nets."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
from tb_xai.backend import adapt
from tb_xai.methods import IntegratedGradients
from tb_xai.probe import as_probe_set


def _bind(method, model, x):
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    method.setup(adapter, probe)
    return adapter


def _count_calls(adapter):
    """Wraps the adapter's model calls; returns the list each call appends its rows to."""
    calls = []
    gradients, predict = adapter.gradients, adapter.predict
    adapter.gradients = lambda inputs, t: (calls.append(len(t)), gradients(inputs, t))[1]
    adapter.predict = lambda inputs, *a, **k: (calls.append(len(inputs[0])), predict(inputs, *a, **k))[1]
    return calls


def test_a_small_relu_mlp_takes_few_model_calls_per_step():
    # Each call costs a fixed ~0.3-1 ms of CPU on a model this small, whatever its rows. The forward calls and one
    # split per probe per round took 48 calls here (f(input), f(baseline), the panels' inner edges, then a forward
    # and a gradient call per round); the outputs of the gradient calls now give every f, and a probe of a small
    # model splits several panels a round.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", bias_initializer="random_normal"),
        keras.layers.Dense(16, activation="relu", bias_initializer="random_normal"),
        keras.layers.Dense(2),
    ])
    x = models.random_inputs((8,), 32, seed=1)
    target = np.zeros(32, np.int32)
    method = IntegratedGradients()
    adapter = _bind(method, model, x)
    calls = _count_calls(adapter)
    (attr,) = method.attribute([x], target)
    assert len(calls) <= 16, calls
    error, allowed = method.completeness_error([x], target, [attr])
    assert np.all(error <= allowed) and method.diagnostics()["probes_over_tolerance"] == 0
    assert method.diagnostics()["steps_mean"] > method.steps  # refinement did run


def _residual_net(zero_biases: bool):
    keras.utils.set_random_seed(1)
    bias = "zeros" if zero_biases else "random_normal"
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", bias_initializer=bias)(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    for _ in range(2):  # two residual blocks: conv-BN-ReLU-conv-BN + identity, then ReLU
        r = keras.layers.Conv2D(8, 3, padding="same", bias_initializer=bias)(h)
        r = keras.layers.ReLU()(keras.layers.BatchNormalization()(r))
        r = keras.layers.Conv2D(8, 3, padding="same", bias_initializer=bias)(r)
        h = keras.layers.ReLU()(keras.layers.Add()([h, keras.layers.BatchNormalization()(r)]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(4, bias_initializer=bias)(h))  # logits


@pytest.fixture(scope="module")
def probes():
    return models.random_inputs((8, 8, 3), 8, seed=3)


def test_completeness_holds_on_a_residual_net(probes):
    model = _residual_net(zero_biases=False)
    method = IntegratedGradients()
    adapter = _bind(method, model, probes)
    target = np.argmax(adapter.predict([probes]), axis=1).astype(np.int32)
    (attr,) = method.attribute([probes], target)
    error, allowed = method.completeness_error([probes], target, [attr])
    assert np.all(error <= allowed), error / allowed
    d = method.diagnostics()
    assert d["probes_over_tolerance"] == 0 and d["steps_mean"] < 200, d


def test_a_fresh_residual_net_at_a_zero_baseline_needs_no_refinement(probes):
    # Zero biases and a zero baseline put every ReLU exactly on its kink at alpha = 0, where the gradient is the
    # left limit (0). The path itself is then linear in alpha (the net is positively homogeneous), so the first pass
    # is exact; taking the first node's gradient at the baseline itself would make its panel 1/6 wrong.
    model = _residual_net(zero_biases=True)
    method = IntegratedGradients()
    adapter = _bind(method, model, probes)
    calls = _count_calls(adapter)
    target = np.argmax(adapter.predict([probes]), axis=1).astype(np.int32)
    del calls[:]
    (attr,) = method.attribute([probes], target)
    assert len(calls) == 1 and method.diagnostics()["steps_mean"] <= method.steps + 1
    error, allowed = method.completeness_error([probes], target, [attr])
    assert np.all(error <= allowed)
