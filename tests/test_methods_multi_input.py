"""Every method on a multi-input (tabular + image) functional model: one array per input, each input explained
with the others held at the probe, per-input guarantees (efficiency, batching, seeding), and the callback's log."""

import keras
import numpy as np
import pytest

import tb_xai
from tb_xai.backend import adapt
from tb_xai.methods import (
    Background, ExpectedGradients, GradientXInput, KernelShap, Lime, Occlusion, Saliency, Segmentation, SmoothGrad,
    surrogate,
)
from tb_xai.methods.segmentation import segment_means
from tb_xai.probe import as_probe_set

FEATURES, SIDE = 5, 12


def tabular_image_model(image_weight=1.0, seed=0):
    """A functional model on {'tabular': (5,), 'image': (12, 12, 3)} with 3 logits; `image_weight` = 0 cuts the
    image branch off (its Dense weights zeroed), so the output depends on the tabular input alone."""
    keras.utils.set_random_seed(seed)
    tabular = keras.Input((FEATURES,), name="tabular")
    image = keras.Input((SIDE, SIDE, 3), name="image")
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(image)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    image_code = keras.layers.Dense(6, activation="tanh", name="image_code")(h)
    t = keras.layers.Dense(8, activation="tanh")(tabular)
    merged = keras.layers.Concatenate()([t, image_code])
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Dense(12, activation="tanh")(merged))
    model = keras.Model({"tabular": tabular, "image": image}, logits)
    if image_weight != 1.0:
        layer = model.get_layer("image_code")
        w, b = layer.get_weights()
        layer.set_weights([w * image_weight, b * image_weight])
    return model


def probes(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"tabular": rng.standard_normal((n, FEATURES)).astype(np.float32),
            "image": rng.random((n, SIDE, SIDE, 3)).astype(np.float32)}


def methods():
    grid = Segmentation("grid", patch=4)
    return [
        Saliency(), GradientXInput(), SmoothGrad(samples=4), ExpectedGradients(samples=16),
        KernelShap(samples=64, segmentation=grid), Lime(samples=300, segmentation=grid), Occlusion(window=4),
    ]


def explain(method, model, x, target, **adapter_kwargs):
    probe = as_probe_set(x)
    adapter = adapt(model, probe, **adapter_kwargs)
    method.setup(adapter, probe)
    return method.attribute(probe.inputs, target), adapter, probe


@pytest.fixture(scope="module")
def model():
    return tabular_image_model()


@pytest.mark.parametrize("method", methods(), ids=lambda m: m.name)
def test_every_method_explains_every_input_of_a_tabular_image_model(model, method):
    x = probes()
    target = np.array([0, 1, 2, 0, 1, 2])
    (tab, img), _, _ = explain(method, model, x, target)
    assert tab.shape == (6, FEATURES)
    image_shape = (6, SIDE, SIDE, 3) if method.requires_gradients else (6, SIDE, SIDE)
    assert img.shape == image_shape
    for values in (tab, img):
        assert values.dtype == np.float32 and np.all(np.isfinite(values)) and np.abs(values).sum() > 0


@pytest.mark.parametrize("method", [m for m in methods() if not m.requires_gradients or m.name == "expected_gradients"],
                         ids=lambda m: m.name)
def test_an_input_the_output_ignores_gets_no_attribution_and_the_other_input_is_explained_as_alone(method):
    """With the image branch cut off, the image's attributions are 0 and the tabular input's equal those of
    the same tabular network explained as a single-input model: the image is held at the probe, not mixed in."""
    cut = tabular_image_model(image_weight=0.0)
    x = probes()
    target = np.array([0, 1, 2, 0, 1, 2])
    if isinstance(method, ExpectedGradients):  # enough draws to compare two Monte Carlo estimates
        method = ExpectedGradients(samples=512)
    if isinstance(method, (KernelShap, ExpectedGradients)):  # one background for both models
        background = probes(8, seed=1)
        method = type(method)(**{**_params(method), "background": background})
    (tab, img), _, _ = explain(method, cut, x, target)
    np.testing.assert_allclose(img, 0.0, atol=1e-6)
    assert np.abs(tab).sum() > 0
    # The same function of the tabular input alone: the image input fixed at the first probe's image (any
    # image gives the same output once the branch is cut).
    alone = TabularAlone(cut, x["image"][0])
    single = type(method)(**_params(method))
    if isinstance(method, (KernelShap, ExpectedGradients)):
        single = type(method)(**{**_params(method), "background": background["tabular"]})
    (reference,), _, _ = explain(single, alone, x["tabular"], target)
    if isinstance(method, ExpectedGradients):  # Monte Carlo draws are keyed on all of a probe's inputs
        assert np.corrcoef(tab.ravel(), reference.ravel())[0, 1] > 0.95
    else:
        np.testing.assert_allclose(tab, reference, rtol=1e-4, atol=1e-5)


class TabularAlone(keras.Model):
    """The multi-input model as a function of its tabular input, the image fixed (a subclassed model)."""

    def __init__(self, model, image):
        super().__init__()
        self.inner = model
        self.image = keras.ops.convert_to_tensor(image[None])

    def call(self, tabular):
        n = keras.ops.shape(tabular)[0]
        return self.inner({"tabular": tabular, "image": keras.ops.broadcast_to(self.image, (n, SIDE, SIDE, 3))})


def _params(method):
    """The constructor arguments of one of `methods()` (and its background, if one was given)."""
    if isinstance(method, (KernelShap, Lime)):
        return {"samples": method.samples, "segmentation": method.segmentation,
                **({"background": method.background_spec} if method.background_spec is not None else {})}
    if isinstance(method, ExpectedGradients):
        return {"samples": method.samples, "background": method.background_spec}
    return {"window": method.window}


def test_kernel_shap_is_efficient_per_input(model):
    """Each input's Shapley values sum to f(x) minus the output with only that input replaced."""
    x = probes()
    target = np.array([0, 1, 2, 0, 1, 2])
    background = probes(4, seed=2)
    method = KernelShap(samples=2 ** 9, segmentation=Segmentation("grid", patch=6),
                        background={"tabular": background["tabular"]})  # the image takes its segment means
    (tab, img), adapter, _ = explain(method, model, x, target)
    rows = np.arange(len(target))
    f_x = adapter.predict([x["tabular"], x["image"]])[rows, target]
    tab_removed = np.array([
        adapter.predict([background["tabular"], np.repeat(x["image"][i:i + 1], 4, axis=0)])[:, target[i]].mean()
        for i in rows])
    np.testing.assert_allclose(tab.sum(axis=1), f_x - tab_removed, atol=1e-4)
    segments = Segmentation("grid", patch=6)(x["image"][0])
    filled = np.stack([segment_means(image, segments) for image in x["image"]])
    img_removed = adapter.predict([x["tabular"], filled])[rows, target]
    # The (12, 12) map repeats each of the 4 superpixels' values over its 36 pixels.
    np.testing.assert_allclose(img.sum(axis=(1, 2)) / 36, f_x - img_removed, atol=1e-4)


@pytest.mark.parametrize("name", ["kernel_shap", "lime", "occlusion", "expected_gradients"])
def test_multi_input_batching_and_probe_neighbours_are_invisible(model, name, monkeypatch):
    """Seeded, and the same through five-row model calls and one-probe blocks, and for a probe alone (with a
    background that is not the probe set, which changes with it)."""
    method = next(m for m in methods() if m.name == name)
    background = probes(5, seed=4)
    if name != "occlusion":
        method = type(method)(**{**_params(method), "background": background if name == "expected_gradients"
                                 else {"tabular": background["tabular"]}})
    x = probes()
    target = np.array([0, 1, 2, 0, 1, 2])
    first, _, _ = explain(method, model, x, target)
    again, _, _ = explain(method, model, x, target)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    with monkeypatch.context() as patch:
        patch.setattr(surrogate, "_ELEMENTS_PER_CALL", 1)
        patch.setattr(surrogate, "_ELEMENTS_PER_BLOCK", 1)
        small, _, _ = explain(type(method)(**_params(method)), model, x, target, batch_size=5)
    for a, b in zip(small, first):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    alone, _, _ = explain(method, model, {k: v[2:3] for k, v in x.items()}, target[2:3])
    for a, b in zip(alone, first):
        np.testing.assert_allclose(a[0], b[2], rtol=1e-4, atol=1e-5)


def test_reference_engine_explains_each_input_with_the_others_held(model):
    x = {k: v[:2] for k, v in probes().items()}
    target = np.array([0, 1])
    background = {"tabular": probes(6, seed=3)["tabular"]}
    grid = Segmentation("grid", patch=4)
    batched, _, _ = explain(KernelShap(samples=200, segmentation=grid, background=background), model, x, target)
    reference, _, _ = explain(KernelShap(samples=200, segmentation=grid, background=background,
                                         engine="reference"), model, x, target)
    for a, b in zip(batched, reference):
        assert a.shape == b.shape and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_backgrounds_per_input_and_their_mistakes(model):
    x = probes()
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    joint = Background.from_array({"image": probes(3, 1)["image"], "tabular": probes(3, 1)["tabular"]})
    method = KernelShap(samples=32, background=joint, segmentation=Segmentation("grid", patch=6))
    method.setup(adapter, probe)
    assert [spec.background.data.shape for spec in method.inputs] == [(3, FEATURES), (3, SIDE, SIDE, 3)]
    config = method.config()
    assert config["tabular/background"] == "array" and config["image/segmentation"] == "grid"
    with pytest.raises(ValueError, match=r"background 0.0 fills .* tabular input 'tabular'.*dict"):
        KernelShap(background=0.0).setup(adapter, probe)
    with pytest.raises(ValueError, match=r"background names inputs \['text'\]"):
        KernelShap(background={"text": 0.0}).setup(adapter, probe)
    with pytest.raises(ValueError, match=r"the background has 1 input array\(s\) but the probe has 2 inputs"):
        ExpectedGradients(background=x["tabular"]).setup(adapter, probe)
    kmeans = Background.kmeans({"tabular": probes(40, 4)["tabular"], "image": probes(40, 4)["image"]}, k=3)
    assert [a.shape for a in kmeans.data] == [(3, FEATURES), (3, SIDE, SIDE, 3)]
    ExpectedGradients(background=kmeans, samples=4).setup(adapter, probe)


def test_callback_logs_every_method_for_every_input(tmp_path, model):
    x = probes(4)
    y = np.array([0, 1, 2, 0])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = tb_xai.AttributionCallback(str(tmp_path), x, labels=y, methods=methods(), target="label")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path))
    assert not run.failures()
    for method in methods():
        assert run.attributions(method.name, "tabular").shape == (1, 4, FEATURES)
        image = (1, 4, SIDE, SIDE, 3) if method.requires_gradients else (1, 4, SIDE, SIDE)
        assert run.attributions(method.name, "image").shape == image
