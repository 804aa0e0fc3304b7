"""Integrated gradients' adaptive panels: few model calls per step on a small model, completeness on residual nets."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
from tb_xai.backend import adapt
from tb_xai.methods import IntegratedGradients
from tb_xai.methods.integrated_gradients import first_pass_nodes
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


def _small_relu_mlp():
    """A ReLU MLP 8-16-16-2 with random biases, 32 probes and their targets (class 0)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", bias_initializer="random_normal"),
        keras.layers.Dense(16, activation="relu", bias_initializer="random_normal"),
        keras.layers.Dense(2),
    ])
    return model, models.random_inputs((8,), 32, seed=1), np.zeros(32, np.int32)


def test_a_small_relu_mlp_takes_few_model_calls_per_step():
    # Each call costs a fixed ~0.3-1 ms of CPU on a model this small, whatever its rows. The forward calls and one
    # split per probe per round took 48 calls here (f(input), f(baseline), the panels' inner edges, then a forward
    # and a gradient call per round); the outputs of the gradient calls now give every f, and a probe of a small
    # model splits several panels a round.
    model, x, target = _small_relu_mlp()
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
    # 16.75 gradient rows per probe with a gradient row at alpha = 0 and splits ranked by size alone; 12.25 with the
    # Radau panel at the baseline and splits ranked toward the sign of the probe's total error.
    assert d["probes_over_tolerance"] == 0 and d["steps_mean"] <= 15, d


def test_a_fresh_residual_net_at_a_zero_baseline_needs_no_refinement(probes):
    # Zero biases and a zero baseline put every ReLU exactly on its kink at alpha = 0, where the gradient is the
    # left limit (0). The path itself is then linear in alpha (the net is positively homogeneous), so the first pass
    # is exact; taking a gradient at the baseline itself would make its panel wrong. The Radau panel at the baseline
    # takes none there: steps - 1 gradient rows per probe (7 before), and one row at the baseline per target.
    model = _residual_net(zero_biases=True)
    method = IntegratedGradients()
    adapter = _bind(method, model, probes)
    calls = _count_calls(adapter)
    target = np.argmax(adapter.predict([probes]), axis=1).astype(np.int32)
    del calls[:]
    (attr,) = method.attribute([probes], target)
    assert len(calls) == 1 and calls[0] == len(probes) * (method.steps - 1) + len(np.unique(target)), calls
    error, allowed = method.completeness_error([probes], target, [attr])
    assert np.all(error <= allowed)


def test_the_first_pass_takes_no_gradient_at_the_baseline_and_integrates_quadratics_exactly():
    nodes, weights = first_pass_nodes(3)  # the default steps=7: a Radau panel [0, 1/3], Lobatto [1/3, 2/3], [2/3, 1]
    np.testing.assert_allclose(nodes, [0, 1 / 9, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1])
    assert weights[0] == 0  # the Radau panel at the baseline needs no gradient there
    for degree in range(3):
        assert abs(np.dot(weights, nodes ** degree) - 1 / (degree + 1)) < 1e-12
    np.testing.assert_allclose(first_pass_nodes(1)[1], [0, 3 / 4, 1 / 4])


def test_a_relu_mlp_is_closer_to_a_many_node_reference_in_its_worst_probe():
    # Completeness bounds the sum of a probe's attributions, not each feature: with a Simpson panel at the baseline
    # (its gradient taken there) and splits ranked by size alone, the worst probe stopped 0.098 (L1, relative) from
    # the 4096-node integral here; with the Radau panel and sign-aware splits, 0.044 (46 gradient rows per probe
    # either way, 9 model calls). With splits several levels deep on a model this small (rows cost little next to a
    # call), 0.027 in 6 calls and 55 rows per probe.
    model, x, target = _small_relu_mlp()
    method, reference = IntegratedGradients(), IntegratedGradients(steps=4096, max_steps=4096, tolerance=None)
    calls = _count_calls(_bind(method, model, x))
    _bind(reference, model, x)
    (attr,) = method.attribute([x], target)
    assert len(calls) <= 6, calls
    (exact,) = reference.attribute([x], target)
    error = np.abs(attr - exact).sum(axis=1) / np.abs(exact).sum(axis=1)
    d = method.diagnostics()
    assert error.max() < 0.04 and d["probes_over_tolerance"] == 0 and d["steps_mean"] < 60, (error.max(), d)


def test_rows_per_round_follow_the_activations_summed_over_layer_calls(probes):
    # 2 x S new gradient rows per probe per round, S = 8192 / (one row's outputs over every layer call), 1 to 16: a
    # model whose rows cost little next to a call (a small MLP, the digits demo's CNN) takes fewer rounds; on the
    # residual net (8,716 elements per row) a probe still splits one panel, one level, per round.
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    cnn = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
    splits = []
    for model, x in [(mlp, models.random_inputs((8,), 4, seed=0)), (cnn, models.random_inputs((8, 8, 1), 4, seed=0)),
                     (_residual_net(zero_biases=False), probes)]:
        method = IntegratedGradients()
        _bind(method, model, x)
        splits.append(method._splits_per_round())
    assert splits == [16, 3, 1], splits
