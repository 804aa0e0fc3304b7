"""Correctness of the gradient family against first principles on tiny real models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
from tb_xai.backend import adapt
from tb_xai.methods import GradCAM, GradientXInput, IntegratedGradients, Saliency, SmoothGrad
from tb_xai.probe import as_probe_set


def _bind(method, model, probe, **adapt_kwargs):
    probe_set = as_probe_set(probe)
    adapter = adapt(model, probe_set, **adapt_kwargs)
    method.setup(adapter, probe_set)
    return adapter


def _predicted(adapter, inputs):
    p = adapter.predict(inputs)
    return (np.argmax(p, axis=1) if p.shape[1] > 1 else np.zeros(len(p))).astype(np.int32)


def test_saliency_is_the_finite_difference_gradient():
    model, x = models.mlp(), models.random_inputs((6,), 4)
    method = Saliency(absolute=False)
    adapter = _bind(method, model, x)
    target = np.array([0, 1, 2, 1], np.int32)
    (grad,) = method.attribute([x], target)
    eps = 1e-2
    for j in range(6):
        step = np.zeros_like(x)
        step[:, j] = eps
        up = adapter.predict([x + step])[np.arange(4), target]
        down = adapter.predict([x - step])[np.arange(4), target]
        np.testing.assert_allclose(grad[:, j], (up - down) / (2 * eps), rtol=2e-2, atol=1e-4)
    absolute = Saliency()
    _bind(absolute, model, x)
    np.testing.assert_allclose(absolute.attribute([x], target)[0], np.abs(grad))


def test_gradient_x_input_and_noise_free_smoothgrad_build_on_the_gradient():
    model, x = models.mlp(), models.random_inputs((6,), 5)
    target = np.array([0, 1, 2, 0, 1], np.int32)
    saliency, gxi, smooth = Saliency(absolute=False), GradientXInput(), SmoothGrad(noise_level=0.0, samples=3)
    for m in (saliency, gxi, smooth):
        _bind(m, model, x)
    (grad,) = saliency.attribute([x], target)
    np.testing.assert_allclose(gxi.attribute([x], target)[0], grad * x, rtol=1e-6)
    np.testing.assert_allclose(smooth.attribute([x], target)[0], grad, rtol=1e-5, atol=1e-7)


def test_smoothgrad_noise_is_seeded_and_position_independent():
    model, x = models.mlp(), models.random_inputs((6,), 6)
    target = np.zeros(6, np.int32)
    a, b, c = SmoothGrad(seed=1), SmoothGrad(seed=1), SmoothGrad(seed=2)
    for m in (a, b, c):
        _bind(m, model, x)
    first = a.attribute([x], target)[0]
    np.testing.assert_array_equal(first, b.attribute([x[::-1]], target)[0][::-1])
    assert not np.allclose(first, c.attribute([x], target)[0])


MODELS = {
    "tanh_softmax": lambda: (models.mlp(), (6,)),
    "relu_softmax": lambda: (models.mlp(activation="relu"), (6,)),
    "sigmoid": lambda: (models.mlp(n_classes=1, final="sigmoid"), (6,)),
    "regression": lambda: (models.mlp(n_classes=1, final=None), (6,)),
    "cnn": lambda: (models.cnn(), (8, 8, 1)),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("baseline", ["zeros", 0.5])
def test_integrated_gradients_completeness_within_one_percent(kind, baseline):
    model, shape = MODELS[kind]()
    x = models.random_inputs(shape, 32, seed=1)
    method = IntegratedGradients(baseline=baseline)  # default 50 steps
    adapter = _bind(method, model, x)
    target = _predicted(adapter, [x])
    (attr,) = method.attribute([x], target)
    rows = np.arange(len(x))
    reference = np.zeros_like(x) if baseline == "zeros" else np.full_like(x, baseline)
    delta = adapter.predict([x])[rows, target] - adapter.predict([reference])[rows, target]
    total = attr.reshape(len(x), -1).sum(axis=1)
    relative = np.abs(total - delta) / np.abs(delta)
    # Within 1%; or, where f(x) - f(baseline) is tiny next to the output (a sigmoid's 0.50074 - 0.5), within the
    # method's allowance: 0.5% plus float32's resolution of the outputs, 1e-5 of the larger (1.2% of that delta).
    error, allowed = method.completeness_error([x], target, [attr])
    f_input = adapter.predict([x])[rows, target]
    tiny = np.abs(delta) < 2e-3 * np.abs(f_input)
    assert np.all((relative < 0.01) | (tiny & (error <= allowed))), (kind, relative.max())


def test_integrated_gradients_rejects_a_baseline_of_the_wrong_shape():
    model, x = models.mlp(), models.random_inputs((6,), 2)
    with pytest.raises(ValueError, match=r"baseline for input 'input' has shape \(5,\); expected \(6,\)"):
        _bind(IntegratedGradients(baseline=np.zeros(5)), model, x)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 2; received: 1"):
        IntegratedGradients(steps=1)


def _manual_grad_cam(model, layer_name, x, target):
    import tensorflow as tf

    inner = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.outputs[0]])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        act, out = inner(xt)
        selected = tf.gather(out, target, axis=1, batch_dims=1)
    grads = tape.gradient(selected, act).numpy()
    cam = np.maximum((act.numpy() * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    return tf.image.resize(cam[..., None], x.shape[1:3]).numpy()[..., 0]


@pytest.mark.parametrize("sequential", [False, True])
def test_grad_cam_matches_the_definition_and_picks_the_last_convolution(sequential):
    model = models.cnn(shape=(8, 8, 3), sequential=sequential)
    x = models.random_inputs((8, 8, 3), 4)
    method = GradCAM()
    adapter = _bind(method, model, x)
    assert method.config() == {"layer": "conv_b"}
    target = _predicted(adapter, [x])
    (cam,) = method.attribute([x], target)
    assert cam.shape == (4, 8, 8)
    np.testing.assert_allclose(cam, _manual_grad_cam(model, "conv_b", x, target), rtol=1e-4, atol=1e-6)
    named = GradCAM(layer="conv_a")
    _bind(named, model, x)
    np.testing.assert_allclose(named.attribute([x], target)[0], _manual_grad_cam(model, "conv_a", x, target),
                               rtol=1e-4, atol=1e-6)


def test_grad_cam_on_a_subclassed_model_and_its_errors():
    model = models.SubclassedCNN()
    x = models.random_inputs((8, 8, 1), 3)
    model(x[:1])
    method = GradCAM()
    _bind(method, model, x)
    (cam,) = method.attribute([x], np.zeros(3, np.int32))
    assert cam.shape == (3, 8, 8) and np.all(cam >= 0) and cam.max() > 0
    with pytest.raises(ValueError, match=r"has no layer named 'nope'"):
        _bind(GradCAM(layer="nope"), model, x)
    dense_only = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"needs a convolution layer, and the model has none"):
        _bind(GradCAM(), dense_only, x)


def test_multi_input_multi_output_models_through_the_target_spec():
    model = models.two_inputs_two_outputs()
    rng = np.random.default_rng(0)
    probe = {"a": rng.normal(size=(6, 5)).astype(np.float32), "b": rng.normal(size=(6, 3)).astype(np.float32)}
    probe_set = as_probe_set(probe)
    for output, units in (("cls", 3), ("reg", 1)):
        adapter = adapt(model, probe_set, output=output)
        assert adapter.n_outputs == units and adapter.output_name == output
        method = IntegratedGradients()
        method.setup(adapter, probe_set)
        target = _predicted(adapter, probe_set.inputs)
        attr_a, attr_b = method.attribute(probe_set.inputs, target)
        assert attr_a.shape == (6, 5) and attr_b.shape == (6, 3)
        rows = np.arange(6)
        delta = adapter.predict(probe_set.inputs)[rows, target] - adapter.predict(
            [np.zeros_like(a) for a in probe_set.inputs])[rows, target]
        np.testing.assert_allclose(attr_a.sum(1) + attr_b.sum(1), delta, rtol=1e-2, atol=1e-5)
    # A dict probe is matched to the model's inputs by key, whatever its order.
    reordered = as_probe_set({"b": probe["b"], "a": probe["a"]})
    adapter = adapt(model, reordered, output="cls")
    method = IntegratedGradients()
    method.setup(adapter, reordered)
    attr_b, attr_a = method.attribute(reordered.inputs, np.zeros(6, np.int32))
    assert attr_b.shape == (6, 3) and attr_a.shape == (6, 5)
    with pytest.raises(ValueError, match=r"the probe has inputs \['a'\] but the model's inputs are"):
        adapt(model, as_probe_set({"a": probe["a"]}), output="cls")
    # A model built on a list of named inputs takes a dict probe by those names too.
    x_in, y_in = keras.Input((5,), name="x"), keras.Input((3,), name="y")
    listed = keras.Model([x_in, y_in], keras.layers.Dense(2)(keras.layers.Concatenate()([x_in, y_in])))
    by_name = as_probe_set({"y": probe["b"], "x": probe["a"]})
    listed_adapter = adapt(listed, by_name)
    expected = listed.predict([probe["a"], probe["b"]], verbose=0)
    np.testing.assert_allclose(listed_adapter.predict(by_name.inputs), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"the model has 2 outputs .*choose one with target=\(output, class\)"):
        adapt(model, probe_set)
    with pytest.raises(ValueError, match=r"target output 'nope' is not one of the model's outputs"):
        adapt(model, probe_set, output="nope")


def test_integrated_gradients_does_not_chase_float32_noise_on_a_saturated_classifier():
    model = models.mlp()
    for layer in model.layers:  # a confident classifier: outputs within float32 resolution of 1
        layer.kernel.assign(layer.kernel.numpy() * 60)
    rng = np.random.default_rng(0)
    anchor = rng.normal(size=6).astype(np.float32)
    x = (anchor + 1e-3 * rng.normal(size=(8, 6))).astype(np.float32)
    method = IntegratedGradients(baseline=anchor)
    adapter = _bind(method, model, x)
    target = _predicted(adapter, [x])
    assert adapter.predict([x])[np.arange(8), target].min() > 0.9999
    rows = []
    gradients = adapter.gradients
    adapter.gradients = lambda inputs, t: (rows.append(len(t)), gradients(inputs, t))[1]
    (attr,) = method.attribute([x], target)
    error, allowed = method.completeness_error([x], target, [attr])
    assert np.all(error <= allowed)
    # No refinement: one call, the first pass's nodes (2 x panels per probe: the node at the baseline has weight 0)
    # and the baseline's row per target.
    assert len(rows) == 1 and sum(rows) == 8 * 2 * method.config()["panels"] + len(np.unique(target))


def test_integrated_gradients_refines_relu_paths_to_the_tolerance_and_never_makes_them_worse():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", kernel_initializer="random_normal", bias_initializer="random_normal"),
        keras.layers.Dense(1, kernel_initializer="random_normal"),
    ])
    for layer in model.layers:  # N(0, 1) weights and biases: many kinks along every path
        layer.kernel.assign(np.random.default_rng(0).normal(size=layer.kernel.shape).astype(np.float32))
        layer.bias.assign(np.random.default_rng(1).normal(size=layer.bias.shape).astype(np.float32))
    x = models.random_inputs((6,), 128, seed=2)
    target = np.zeros(128, np.int32)
    refined, first_pass = IntegratedGradients(), IntegratedGradients(tolerance=None)
    _bind(refined, model, x)
    _bind(first_pass, model, x)
    (attr,) = refined.attribute([x], target)
    error, allowed = refined.completeness_error([x], target, [attr])
    first_error, _ = refined.completeness_error([x], target, first_pass.attribute([x], target))
    assert np.any(first_error > allowed)  # the first pass alone misses the tolerance on some probes
    assert np.all(error <= np.maximum(allowed, first_error))  # refinement never returns a worse answer
    assert np.mean(error <= allowed) >= 0.99
