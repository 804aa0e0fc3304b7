"""The models people train: keras.applications backbones (weights=None, smallest sizes), nested and not,
subclassed models, logits, multi-input models; each built once per module and never trained beyond a step."""

import logging

import keras
import numpy as np
import pytest

import models
import tb_xai
from tb_xai.backend import adapt
from tb_xai.methods import GradCAM, Saliency
from tb_xai.probe import as_probe_set

A = keras.applications

# family: (constructor, smallest input size, the layer whose output feeds the pooling/head)
FAMILIES = {
    "VGG16": (A.VGG16, 32, "block5_pool"),
    "ResNet50": (A.ResNet50, 32, "conv5_block3_out"),
    "MobileNetV2": (A.MobileNetV2, 32, "out_relu"),
    "EfficientNetB0": (A.EfficientNetB0, 32, "top_activation"),
    "DenseNet121": (A.DenseNet121, 32, "relu"),
    "Xception": (A.Xception, 71, "block14_sepconv2_act"),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 32, None),  # its final LayerNormalization (an automatic name)
}


@pytest.fixture(scope="module")
def backbones():
    """One backbone per family, built once; the flat and the nested model share its layers."""
    built = {}
    for family, (constructor, size, _) in FAMILIES.items():
        keras.utils.set_random_seed(0)
        built[family] = constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    return built


def _head(x, units=3, activation="softmax"):
    return keras.layers.Dense(units, activation=activation)(keras.layers.GlobalAveragePooling2D()(x))


def _nested(backbone):
    inputs = keras.Input(backbone.input.shape[1:])
    return keras.Model(inputs, _head(backbone(inputs)))


def _flat(backbone):
    return keras.Model(backbone.input, _head(backbone.output))


def _images(size, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_grad_cam_default_map_feeds_the_head_flat_and_nested(backbones, family):
    backbone = backbones[family]
    size, expected = FAMILIES[family][1], FAMILIES[family][2]
    expected = expected or backbone.output._keras_history.operation.name
    probe = as_probe_set(_images(size))
    flat = adapt(_flat(backbone), probe).feature_map(4)
    nested = adapt(_nested(backbone), probe).feature_map(4)
    assert flat.path == expected, (family, flat.path, flat.kind)
    assert nested.path == f"{backbone.name}/{expected}", (family, nested.path)
    assert nested.layer is flat.layer and nested.shape[1:] == tuple(backbone.output.shape[1:])


def test_grad_cam_on_the_transfer_learning_pattern_explains_the_backbone_map(backbones, caplog):
    # keras.Model(i, Dense(GAP(MobileNetV2(...)(i)))) used to explain Conv1, the first stem convolution.
    backbone = backbones["MobileNetV2"]
    x = _images(32, n=3)
    adapter = adapt(_nested(backbone), as_probe_set(x), logits=True)
    method = GradCAM()
    with caplog.at_level(logging.WARNING, logger="tb_xai.methods.grad_cam"):
        method.setup(adapter, adapter.probe)
    assert method.config() == {"layer": f"{backbone.name}/out_relu"}
    # At 32x32 that map is one cell: said, not silently uniform.
    assert "whose map is 1x1: one cell, so every map is uniform" in caplog.text
    (cam,) = method.attribute([x], np.zeros(3, np.int32))
    assert cam.shape == (3, 32, 32) and np.all(np.isfinite(cam))
    # A nested layer may also be named by its path, or by its bare name when only one layer has it.
    assert adapter.find_layer("block_16_project") == adapter.find_layer(f"{backbone.name}/block_16_project")
    assert adapter.find_layer("block_16_project").path == f"{backbone.name}/block_16_project"


def test_grad_cam_explains_a_named_layer_inside_a_nested_model():
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 1))
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="first")(inner_in)
    backbone = keras.Model(inner_in, keras.layers.Conv2D(4, 3, padding="same", name="second")(first), name="trunk")
    branch_in = keras.Input((8, 8, 4))
    branch = keras.Model(branch_in, keras.layers.Conv2D(2, 1, name="first")(branch_in), name="branch")
    outer_in = keras.Input((8, 8, 1))
    model = keras.Model(outer_in, _head(branch(backbone(outer_in))))
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32)
    method = GradCAM(layer="trunk/first")
    _bind(method, model, x)
    assert method.config() == {"layer": "trunk/first"}
    (cam,) = method.attribute([x], np.zeros(3, np.int32))
    assert cam.shape == (3, 8, 8) and cam.max() > 0
    # "first" names a layer of each nested model.
    with pytest.raises(ValueError, match=r"more than one layer is named 'first': \['branch/first', 'trunk/first'\]"):
        _bind(GradCAM(layer="first"), model, x)
    method = GradCAM(layer=backbone.get_layer("first"))  # a layer object
    _bind(method, model, x)
    assert method.config() == {"layer": "trunk/first"}


class LateBeforeEarly(keras.Model):
    """Creates `late` first but calls `early` first; attribute order is not call order."""

    def __init__(self):
        super().__init__()
        self.late = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="late")
        self.early = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="early")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.pool(self.late(self.early(x))))


class Residual(keras.layers.Layer):
    """A block whose output is computed after its last inner layer (the skip add)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, x):
        return keras.ops.relu(x + self.conv(x))


class ResidualNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.stem = keras.layers.Conv2D(3, 3, padding="same", name="stem")
        self.block = Residual(name="block")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(keras.ops.mean(self.block(self.stem(x)), axis=(1, 2)))


def _bind(method, model, x):
    adapter = adapt(model, as_probe_set(x))
    method.setup(adapter, adapter.probe)
    return adapter


def test_grad_cam_follows_call_order_in_subclassed_models():
    x = _images(8, n=3)
    model = LateBeforeEarly()
    model(x[:1])
    method = GradCAM()
    _bind(method, model, x)
    assert method.config() == {"layer": "late"}
    (cam,) = method.attribute([x], np.zeros(3, np.int32))
    assert cam.shape == (3, 8, 8) and cam.max() > 0
    # A custom block that adds its skip connection after its last layer is explained at its own output.
    residual = ResidualNet()
    residual(x[:1])
    method = GradCAM()
    _bind(method, residual, x)
    assert method.config() == {"layer": "block"}


def test_grad_cam_recognises_transposed_convolutions_and_names_bad_layers():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(inputs)
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(h)
    model = keras.Model(inputs, _head(h))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    method = GradCAM()
    _bind(method, model, x)
    assert method.config() == {"layer": "up"}
    # A model that upsamples with Conv2DTranspose only, after a Dense stem.
    dense_then_transpose = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Dense(2), keras.layers.Conv2DTranspose(3, 3, name="tconv"),
        keras.layers.Flatten(), keras.layers.Dense(2)])
    method = GradCAM()
    _bind(method, dense_then_transpose, x)
    assert method.config() == {"layer": "tconv"}
    with pytest.raises(ValueError, match=r"layer 'input_layer\w*' is the model's InputLayer"):
        _bind(GradCAM(layer=model.layers[0].name), model, x)
    with pytest.raises(ValueError, match=r"has no layer named 'nope' among the layers it calls; .*'up'"):
        _bind(GradCAM(layer="nope"), model, x)
    with pytest.raises(ValueError, match=r"layer 'dense\w*' \(Dense\) outputs shape \(3,\), which has no spatial"):
        _bind(GradCAM(layer=model.layers[-1].name), model, x)


def test_grad_cam_on_a_multi_input_model_explains_the_input_reaching_the_map(tmp_path):
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    table = keras.Input((5,), name="table")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", name="conv")(image))
    joined = keras.layers.Concatenate()([features, keras.layers.Dense(4)(table)])
    model = keras.Model({"image": image, "table": table}, keras.layers.Dense(3, activation="softmax")(joined))
    rng = np.random.default_rng(0)
    x = {"image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32), "table": rng.normal(size=(16, 5)).astype(np.float32)}
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    probe = {k: v[:3] for k, v in x.items()}
    cb = tb_xai.AttributionCallback(str(tmp_path), probe, methods=["grad_cam", "saliency"])
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    assert cb.methods[0].config() == {"layer": "conv", "inputs": ["image"]}
    assert run.attributions("grad_cam", input="image").shape == (1, 3, 8, 8)
    assert run.attributions("saliency", input="table").shape == (1, 3, 5)
    with pytest.raises(Exception):
        run.attributions("grad_cam", input="table")


# ------------------------------------------------------------------------------------------------ logits
def _saturated_cnn(activation="softmax", units=3):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    out = keras.layers.Dense(units, activation=activation, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, out)
    kernel, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel * 1e4, bias])  # the softmax saturates on every probe
    return model


def test_logits_explain_a_saturated_softmax_and_vanishing_gradients_warn(tmp_path, caplog):
    model = _saturated_cnn()
    x = np.random.default_rng(1).uniform(0, 1, size=(6, 8, 8, 1)).astype(np.float32)
    probs = adapt(model, as_probe_set(x))
    logits = adapt(model, as_probe_set(x), logits=True)
    assert logits.explained == {"output": probs.output_name, "explains": "logits", "layer": "head",
                                "activation": "softmax", "stripped": "softmax", "binary_classes": False}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits.predict([x]))),
                               probs.predict([x]), atol=1e-6)
    target = np.argmax(probs.predict([x]), axis=1).astype(np.int32)
    assert np.abs(probs.gradients([x], target)[1][0]).max() < 1e-8
    assert np.abs(logits.gradients([x], target)[1][0]).max() > 1e-3
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for name, flag in (("probs", False), ("logits", True)):
        caplog.clear()
        cb = tb_xai.AttributionCallback(str(tmp_path / name), x, methods=["saliency", "grad_cam"], logits=flag)
        with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
            model.fit(x, target, epochs=2, verbose=0, callbacks=[cb])
        warnings = [r.getMessage() for r in caplog.records if "all zero or vanishingly small" in r.getMessage()]
        if flag:
            assert warnings == []
        else:
            assert len(warnings) == 2, warnings  # once per method, not once per step
            assert "the softmax of layer 'head' is saturated" in warnings[0] and "Pass logits=True" in warnings[0]
    run = tb_xai.load(str(tmp_path / "logits"))
    assert np.abs(run.attributions("saliency")).max() > 1e-3
    assert run.config("saliency") == {"absolute": True, "max_overhead": 0.05, "explains": "logits",
                                      "stripped": "softmax"}


def test_logits_strip_activation_layers_and_refuse_what_cannot_be_stripped():
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    for last in (keras.layers.Activation("sigmoid"), keras.layers.Softmax()):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="z"), last])
        adapter = adapt(model, as_probe_set(x), logits=True)
        expected = keras.ops.convert_to_numpy(model.get_layer("z")(x))
        np.testing.assert_allclose(adapter.predict([x]), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(adapt(model, as_probe_set(x)).predict([x]),
                                   keras.ops.convert_to_numpy(model(x)), atol=1e-6)  # restored after
    # A subclassed model whose call() returns its softmax layer's output, and a classifier nested whole.
    subclassed_cnn = models.SubclassedCNN(n_classes=3)
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    subclassed_cnn(images[:1])
    adapter = adapt(subclassed_cnn, as_probe_set(images), logits=True)
    np.testing.assert_allclose(adapter.predict([images]), _pre_activation(subclassed_cnn, images),
                               rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax", name="inner")])
    outer_in = keras.Input((6,))
    nested = keras.Model(outer_in, classifier(outer_in))
    adapter = adapt(nested, as_probe_set(x), logits=True)
    assert adapter.explained["layer"] == f"{classifier.name}/inner"
    np.testing.assert_allclose(adapter.predict([x]), x @ classifier.layers[0].kernel.numpy()
                               + classifier.layers[0].bias.numpy(), rtol=1e-5, atol=1e-5)
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="linear_head")])
    with pytest.raises(ValueError, match=r"layer 'linear_head' \(Dense\) whose activation is 'linear'; only a "
                                         r"final softmax or sigmoid can be stripped"):
        adapt(linear, as_probe_set(x), logits=True)

    class SoftmaxInCall(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return keras.ops.softmax(self.dense(inputs))

    subclassed = SoftmaxInCall()
    subclassed(x[:1])
    with pytest.raises(ValueError, match=r"computes it after its last layer"):
        adapt(subclassed, as_probe_set(x), logits=True)
    with pytest.raises(TypeError, match=r"logits must be True or False; received: 'yes'"):
        tb_xai.AttributionCallback("runs", x, logits="yes")


def _pre_activation(model, images):
    head = model.head
    features = keras.ops.convert_to_numpy(model.pool(model.conv(images)))
    return features @ head.kernel.numpy() + head.bias.numpy()


def test_sigmoid_with_label_targets_explains_the_labelled_class(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 1, 0])
    cb = tb_xai.AttributionCallback(str(tmp_path), x, labels=labels, target="label",
                                    methods=[Saliency(absolute=False)], class_names=["neg", "pos"])
    model.fit(x, labels.astype(np.float32), epochs=1, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    np.testing.assert_array_equal(run.targets()[0], labels)
    p = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(run.predictions()[0], np.stack([1 - p, p], axis=1), atol=1e-5)
    _, (grad_p,) = adapt(model, as_probe_set(x)).gradients([x], np.zeros(6, np.int32))
    sign = np.where(labels == 1, 1.0, -1.0)[:, None]
    np.testing.assert_allclose(run.attributions("saliency")[0], sign * grad_p, rtol=1e-4, atol=1e-7)
    # Under logits=True the two classes are -z and z.
    both = adapt(model, as_probe_set(x), logits=True, binary_classes=True).predict([x])
    z = np.log(p / (1 - p))
    np.testing.assert_allclose(both, np.stack([-z, z], axis=1), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------- validation
def test_float_token_ids_through_an_embedding_are_text(tmp_path):
    ids = keras.Input((6,))  # float32 by default: the ids are cast to int inside the Embedding
    model = keras.Model(ids, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Embedding(20, 4)(ids))))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    tokens = (np.arange(60).reshape(10, 6) % 20).astype(np.float32)
    # Whole-number floats feeding an Embedding are token ids: explained at the Embedding's output, per token.
    cb = tb_xai.AttributionCallback(str(tmp_path), tokens[:4], methods=["saliency", "integrated_gradients"])
    model.fit(tokens, np.arange(10) % 2, epochs=1, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    assert run.modality() == "text" and run.failures() == []
    assert run.attributions("integrated_gradients").shape == (1, 4, 6)
    padding = tokens[:4] == 0  # id 0 is padding: exactly 0 there
    assert padding.sum() == 2 and np.all(run.attributions("saliency")[0][padding] == 0)


def test_bad_probes_and_parameters_are_named(tmp_path):
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    with_nan = x.copy()
    with_nan[1, 2] = np.nan
    with_nan[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"probe holds 2 non-finite value\(s\) \(1 NaN, 1 inf\) in 24"):
        tb_xai.AttributionCallback(str(tmp_path), with_nan)
    with pytest.raises(ValueError, match=r"probe\['b'\] holds 1 non-finite"):
        tb_xai.AttributionCallback(str(tmp_path), {"a": x, "b": with_nan[:, 2:5]})
    with pytest.raises(TypeError, match=r"methods must be a method name, an AttributionMethod, or a list of them; "
                                        r"received: 42"):
        tb_xai.AttributionCallback(str(tmp_path), x, methods=42)
    with pytest.raises(TypeError, match=r"dtype complex\d+; complex inputs are not supported"):
        tb_xai.AttributionCallback(str(tmp_path), x + 1j)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(4))).batch(2)
    with pytest.raises(TypeError, match=r"probe is a \w*Dataset\w*; .*next\(iter\(dataset.unbatch\(\).batch\(32\)\)\)"):
        tb_xai.AttributionCallback(str(tmp_path), dataset)


def test_uint8_images_into_a_float_input_are_cast_as_keras_casts(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, _head(keras.layers.Rescaling(1 / 255)(
        keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs))))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3)).astype(np.uint8)
    callbacks = [tb_xai.AttributionCallback(str(tmp_path / name), probe, methods=["saliency", "grad_cam"], target=0)
                 for name, probe in (("uint8", images), ("float", images.astype(np.float32)))]
    model.fit(images, np.arange(4) % 3, epochs=1, verbose=0, callbacks=callbacks)
    runs = {name: tb_xai.load(str(tmp_path / name)) for name in ("uint8", "float")}
    for method in ("saliency", "grad_cam"):
        np.testing.assert_allclose(runs["uint8"].attributions(method), runs["float"].attributions(method),
                                   rtol=1e-5, atol=1e-8)


def test_a_new_callback_continuing_a_run_warns_only_when_it_replaces_steps(tmp_path, caplog):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(x, y, epochs=4, verbose=0,
              callbacks=[tb_xai.AttributionCallback(str(tmp_path), x[:2], methods=["saliency"])])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        model.fit(x, y, epochs=6, initial_epoch=4, verbose=0,
                  callbacks=[tb_xai.AttributionCallback(str(tmp_path), x[:2], methods=["saliency"])])
    assert "replace" not in caplog.text
    assert tb_xai.load(str(tmp_path)).steps("saliency") == [0, 1, 2, 3, 4, 5]
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        model.fit(x, y, epochs=6, initial_epoch=5, verbose=0,
                  callbacks=[tb_xai.AttributionCallback(str(tmp_path), x[:2], methods=["saliency"])])
    assert "steps logged again replace them (from step 5)" in caplog.text


def test_the_vanishing_warning_claims_saturation_only_when_the_probabilities_show_it():
    from tb_xai.saturation import vanishing_reason, vanishing_rows

    magnitudes = np.array([[0.0, 0.0], [1e-9, 0.0], [0.5, 0.1], [2e-7, 0.0]])
    np.testing.assert_array_equal(vanishing_rows(magnitudes), [True, True, False, True])
    explained = {"output": "out", "explains": "outputs", "layer": "head", "activation": "softmax"}
    saturated = np.array([[1.0, 0.0], [0.99999, 0.00001], [0.5, 0.5]])
    calm = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    targets = np.array([0, 0, 1])
    assert "is saturated" in vanishing_reason(2, 3, explained, saturated, targets)
    assert "Pass logits=True" in vanishing_reason(2, 3, explained, saturated, targets)
    assert "saturated" not in vanishing_reason(2, 3, explained, calm, targets)
    assert "Grad-CAM keeps only positive evidence" in vanishing_reason(2, 3, explained, calm, targets, "grad_cam")
