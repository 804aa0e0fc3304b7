"""Integrated gradients: parameter bounds, bounded memory for any parameter, completeness misses recorded."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import models
import tb_xai
from tb_xai.backend import adapt
from tb_xai.methods import IntegratedGradients
from tb_xai.methods.integrated_gradients import MAX_STEPS, integration_nodes
from tb_xai.probe import as_probe_set


def _bind(method, model, x, batch_size=1024):
    probe = as_probe_set(x)
    adapter = adapt(model, probe, batch_size=batch_size)
    method.setup(adapter, probe)
    return adapter


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 2 ** 31 - 1}, r"steps must be at most 4096 path points per probe; received: 2147483647"),
    ({"max_steps": 10 ** 9}, r"max_steps must be at most 4096 path points per probe; received: 1000000000"),
    ({"steps": True}, r"steps must be an integer >= 2; received: True"),
    ({"tolerance": 5}, r"tolerance must be None or a number in \(0, 1\) \(0.005 = 0.5%\); received: 5"),
    ({"tolerance": float("nan")}, r"tolerance must be None or a number in \(0, 1\)"),
    ({"baseline": float("nan")}, r"baseline must be a finite number; received: nan"),
    ({"baseline": float("inf")}, r"baseline must be a finite number; received: inf"),
])
def test_absurd_parameters_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IntegratedGradients(**kwargs)


def test_a_baseline_array_with_nan_is_refused_at_setup():
    baseline = np.zeros(6, np.float32)
    baseline[2] = np.nan
    with pytest.raises(ValueError, match=r"baseline for input 'input' has 1 NaN or inf value\(s\)"):
        _bind(IntegratedGradients(baseline=baseline), models.mlp(), models.random_inputs((6,), 2))


def test_gauss_legendre_nodes_at_the_largest_step_count_are_cheap_and_right():
    nodes, weights = integration_nodes(MAX_STEPS, "gausslegendre")
    assert nodes.shape == (MAX_STEPS,) and 0 < nodes.min() and nodes.max() < 1
    assert abs(weights.sum() - 1) < 1e-9
    assert abs((weights * nodes ** 3).sum() - 0.25) < 1e-9  # integral of a^3 over [0, 1]


def test_no_model_call_exceeds_batch_size_rows_whatever_the_steps():
    model = models.cnn()
    x = models.random_inputs((8, 8, 1), 5, seed=0)
    for tolerance in (0.005, None):  # adaptive panels (3001 nodes each), and one 3001-node rule
        method = IntegratedGradients(steps=3001, max_steps=3001, tolerance=tolerance)
        adapter = _bind(method, model, x, batch_size=256)
        calls = []
        gradients = adapter.gradients
        adapter.gradients = lambda inputs, t: (calls.append(len(t)), gradients(inputs, t))[1]
        (attr,) = method.attribute([x], np.zeros(5, np.int32))
        # Adaptive: the node at the baseline has weight 0 and no row per probe; one row at the baseline itself (its
        # output), shared by the probes of one target.
        adaptive = tolerance is not None
        assert max(calls) <= 256 and sum(calls) == 5 * (3001 - adaptive) + adaptive
        # Slicing the path changes nothing but the order of the sum.
        reference = IntegratedGradients(steps=3001, max_steps=3001, tolerance=tolerance)
        _bind(reference, model, x, batch_size=2 ** 15)
        np.testing.assert_allclose(attr, reference.attribute([x], np.zeros(5, np.int32))[0], rtol=1e-4, atol=1e-7)


def _kinked_relu_mlp():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    rng = np.random.default_rng(0)
    for layer in model.layers:  # N(0, 1) weights and biases: many kinks along every path
        layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype(np.float32))
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype(np.float32))
    return model


def test_refinement_spends_steps_only_on_the_probes_that_need_them():
    x = models.random_inputs((6,), 64, seed=2)
    method = IntegratedGradients()
    _bind(method, _kinked_relu_mlp(), x)
    (attr,) = method.attribute([x], np.zeros(64, np.int32))
    d = method.diagnostics()
    assert method.steps < d["steps_mean"] < 0.5 * method.max_steps
    error, allowed = method.completeness_error([x], np.zeros(64, np.int32), [attr])
    assert d["probes_over_tolerance"] == int(np.sum(error > allowed))
    assert d["completeness_error_max"] == pytest.approx(np.max(error / (allowed / method.tolerance)))


@pytest.mark.parametrize("max_steps", [32, 2048])
def test_steps_mean_counts_every_gradient_row_and_max_steps_bounds_them(max_steps):
    # A probe split several times in one round was counted once (steps_mean 2-3x low, max_steps overrun).
    x = models.random_inputs((6,), 64, seed=2)
    method = IntegratedGradients(max_steps=max_steps)
    adapter = _bind(method, _kinked_relu_mlp(), x)
    rows = []
    gradients = adapter.gradients
    adapter.gradients = lambda inputs, t: (rows.append(len(t)), gradients(inputs, t))[1]
    (attr,) = method.attribute([x], np.zeros(64, np.int32))
    d = method.diagnostics()
    assert sum(rows) == pytest.approx(d["steps_mean"] * 64)
    # Every probe's path points within max_steps, plus the baseline's own row (one for the single target).
    assert sum(rows) <= max_steps * 64 + 1 and d["steps_mean"] > method.steps
    if max_steps == 2048:
        assert d["probes_over_tolerance"] == 0


def test_refinement_without_room_to_keep_panels_recomputes_them_and_gives_the_same_attributions(monkeypatch):
    from tb_xai.methods import integrated_gradients as ig_module

    x = models.random_inputs((6,), 32, seed=2)
    target = np.zeros(32, np.int32)
    kept, recomputed = IntegratedGradients(), IntegratedGradients()
    model = _kinked_relu_mlp()
    _bind(kept, model, x)
    (expected,) = kept.attribute([x], target)
    monkeypatch.setattr(ig_module, "_NODE_BYTES", 0)  # no node gradient kept: each split recomputes its nodes
    _bind(recomputed, model, x)
    (attr,) = recomputed.attribute([x], target)
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-6)
    assert recomputed.diagnostics()["steps_mean"] > kept.diagnostics()["steps_mean"]
    assert recomputed.diagnostics()["probes_over_tolerance"] == kept.diagnostics()["probes_over_tolerance"] == 0


def test_a_completeness_miss_is_logged_as_a_scalar_and_warned_once(tmp_path, caplog):
    model = _kinked_relu_mlp()
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    x = models.random_inputs((6,), 64, seed=2)
    y = np.zeros((64, 1), np.float32)
    method = IntegratedGradients(steps=2, max_steps=4)  # too few path points for these kinks
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:16], methods=[method])
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    warnings = [r for r in caplog.records if "miss completeness" in r.getMessage()]
    assert len(warnings) == 1 and "integrated_gradients" in warnings[0].getMessage()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "xai")).Reload()
    over = events.Tensors("xai/integrated_gradients/probes_over_tolerance")
    assert [e.step for e in over] == [0, 1, 2]
    assert all(float(np.asarray(e.tensor_proto.float_val)[0]) >= 1 for e in over)
    assert len(tb_xai.load(str(tmp_path)).steps("integrated_gradients")) == 3  # the attributions are kept
