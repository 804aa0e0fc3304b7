"""Gradient methods on token inputs: attributions at the Embedding's output, one value per token.

Closed forms on a bag-of-embeddings linear model, completeness against the model's own output at the baseline
tokens, exact zeros at padding, seeded reproducibility, and the configuration errors of text inputs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tb_xai import text as text_lib
from tb_xai.backend import adapt
from tb_xai.methods import (ExpectedGradients, GradientXInput, IntegratedGradients, Saliency, SmoothGrad)
from tb_xai.probe import as_probe_set

V, T, D = 24, 9, 5
GRADIENT_METHODS = {
    "saliency": lambda: Saliency(),
    "gradient_x_input": lambda: GradientXInput(),
    "integrated_gradients": lambda: IntegratedGradients(),
    "smoothgrad": lambda: SmoothGrad(samples=6),
    "expected_gradients": lambda: ExpectedGradients(samples=12),
}


def _ids(n=6, seed=0, padded_from=6):
    ids = np.random.default_rng(seed).integers(1, V, size=(n, T)).astype(np.int32)
    ids[:, padded_from:] = 0
    ids[0, 3:] = 0  # one short text
    return ids


def _bind(model, ids, **arguments):
    probe = as_probe_set(ids)
    adapter = adapt(model, probe)
    text_lib.resolve(adapter, probe, text_lib.check_arguments(**arguments))
    return adapter


IDS = _ids()


@pytest.fixture(scope="module")
def linear():
    """(model, adapter on IDS): f(ids) = W^T mean_t E[ids_t] + b, a bag of embeddings, linear in them."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((T,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(V, D, name="emb")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    return model, _bind(model, IDS)


@pytest.fixture(scope="module")
def conv():
    """Embedding + Conv1D + max pooling, no mask: the baseline tokens alone fix f(baseline)."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, D, name="emb")(inputs)
    h = keras.layers.Conv1D(6, 3, padding="same", activation="tanh")(h)
    h = keras.layers.GlobalMaxPooling1D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8, activation="gelu")(h)))
    return model, _bind(model, IDS)


@pytest.fixture(scope="module")
def masked_gru():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((T,), dtype="int32")
    # Embeddings far from zero: the path from the padding embedding is far from linear.
    h = keras.layers.Embedding(V, D, mask_zero=True, name="emb",
                               embeddings_initializer=keras.initializers.RandomNormal(stddev=2.0))(inputs)
    h = keras.layers.GRU(6)(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    return model, _bind(model, IDS)


def _explain(method, adapter, target, ids=IDS):
    method.setup(adapter, adapter.probe)
    (values,) = method.attribute([ids], np.asarray(target, np.int32))
    return values


TARGET = np.arange(6, dtype=np.int32) % 3


def test_integrated_gradients_equals_the_closed_form_on_a_bag_of_embeddings(linear):
    model, adapter = linear
    table = model.get_layer("emb").embeddings.numpy()
    w = model.get_layer("head").kernel.numpy()
    # d f_c / d E_t = W[:, c] / T everywhere: IG_t = (E[x_t] - E[pad]) . W[:, c] / T; gradient x input E[x_t] . W / T.
    expected_ig = np.einsum("ptd,pd->pt", table[IDS] - table[0], w[:, TARGET].T) / T
    expected_gxi = np.einsum("ptd,pd->pt", table[IDS], w[:, TARGET].T) / T
    padding = IDS == 0
    expected_ig[padding] = expected_gxi[padding] = 0
    for method, expected in ((IntegratedGradients(), expected_ig), (GradientXInput(), expected_gxi)):
        values = _explain(method, adapter, TARGET)
        assert values.shape == (6, T)
        np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)
    norms = np.linalg.norm(w[:, TARGET].T, axis=1)[:, None] / T
    np.testing.assert_allclose(_explain(Saliency(), adapter, TARGET), np.where(padding, 0, norms), rtol=1e-5)


@pytest.mark.parametrize("token_baseline", ["padding", 1, "zeros"])
def test_token_attributions_sum_to_the_output_difference_from_the_baseline(conv, token_baseline):
    model, adapter = conv
    method = IntegratedGradients(token_baseline=token_baseline)
    values = _explain(method, adapter, TARGET)
    rows = np.arange(6)
    f_x = model.predict(IDS, verbose=0)[rows, TARGET]
    if token_baseline == "zeros":  # zero embeddings at the tokens, padding's own embedding at padding
        table = model.get_layer("emb").embeddings.numpy()
        embedded = np.where((IDS == 0)[..., None], table[IDS], 0.0).astype(np.float32)
        head = keras.Model(model.get_layer("emb").output, model.output)
        f_base = head.predict(embedded, verbose=0)[rows, TARGET]
    else:
        token = 0 if token_baseline == "padding" else token_baseline
        f_base = model.predict(np.where(IDS == 0, 0, token), verbose=0)[rows, TARGET]
    np.testing.assert_allclose(values.sum(axis=1), f_x - f_base, rtol=0.01, atol=1e-5)
    assert method.diagnostics()["probes_over_tolerance"] == 0
    assert method.config()["token_baseline"] == token_baseline


def test_completeness_holds_on_a_masked_recurrent_model_and_refinement_works_on_text(masked_gru):
    _, adapter = masked_gru
    coarse = IntegratedGradients(steps=2, max_steps=2)  # no room to refine
    refined = IntegratedGradients(steps=2, tolerance=0.002)
    errors = []
    for method in (coarse, refined):
        values = [_explain(method, adapter, TARGET)]
        error, allowed = method.completeness_error([IDS], TARGET, values)
        errors.append(error)
    assert np.any(errors[0] > allowed)  # two path points are not enough here
    assert np.all(errors[1] <= allowed) and errors[1].max() < errors[0].max()
    assert refined.diagnostics()["steps_mean"] > 2


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_padding_gets_exactly_zero_and_tokens_do_not(masked_gru, name):
    values = _explain(GRADIENT_METHODS[name](), masked_gru[1], np.zeros(6))
    assert values.shape == (6, T) and values.dtype == np.float32
    assert np.all(values[IDS == 0] == 0)
    assert np.count_nonzero(values[IDS != 0]) == np.count_nonzero(IDS)


@pytest.mark.parametrize("name", ["smoothgrad", "expected_gradients"])
def test_seeded_methods_on_text_repeat_and_do_not_depend_on_the_probe_order(conv, name):
    order = np.array([3, 1, 5, 0, 2, 4])
    adapter = conv[1]
    first = _explain(GRADIENT_METHODS[name](), adapter, TARGET)
    again = _explain(GRADIENT_METHODS[name](), adapter, TARGET)
    permuted = _explain(GRADIENT_METHODS[name](), adapter, TARGET[order], IDS[order])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(permuted, first[order], rtol=1e-5, atol=1e-7)


def test_embedding_gradients_replace_the_embedding_output(masked_gru):
    model, adapter = masked_gru
    call = adapter.embedding_call("input")
    embedded = adapter.embeddings(call, [IDS])
    table = model.get_layer("emb").embeddings.numpy()
    np.testing.assert_allclose(embedded, table[IDS], rtol=1e-6)
    selected, grads = adapter.embedding_gradients(call, [IDS], embedded, np.zeros(6, np.int32))
    np.testing.assert_allclose(selected, model.predict(IDS, verbose=0)[:, 0], rtol=1e-5)
    # The mask follows the real ids: whatever sits at a padding position, the output does not see it.
    moved = embedded.copy()
    moved[IDS == 0] += 3.0
    shifted, _ = adapter.embedding_gradients(call, [IDS], moved, np.zeros(6, np.int32))
    np.testing.assert_allclose(shifted, selected, rtol=1e-6)
    assert np.all(grads[IDS == 0] == 0) and np.abs(grads[IDS != 0]).sum() > 0


# ---------------------------------------------------------------------------------- configuration errors
def test_a_float_input_with_whole_numbers_feeding_an_embedding_is_text():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T,))  # float32 by default: the Embedding casts
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(V, 3)(inputs))))
    ids = _ids().astype(np.float32)
    adapter = _bind(model, ids)
    assert adapter.probe.modality(0) == "text"
    with pytest.raises(ValueError, match=r"non-integer value\(s\) \(e.g. 1.5 at probe 0, position 0\)"):
        bad = ids.copy()
        bad[0, 0] = 1.5
        _bind(model, bad)


def test_text_configuration_errors_name_the_value(linear, masked_gru):
    ids = IDS
    linear, adapter = linear
    masked_gru = masked_gru[0]
    with pytest.raises(ValueError, match="the vocabulary has 10 tokens but probe input 'input' holds token id 23"):
        _bind(linear, ids, vocabulary=[f"t{i}" for i in range(10)])
    big = ids.copy()
    big[1, 2] = V + 3
    with pytest.raises(ValueError, match=rf"holds token id {V + 3} \(probe 1, position 2\).*input_dim={V}"):
        _bind(linear, big)
    with pytest.raises(ValueError, match="mask_zero=True, so id 0 is its padding; received padding_id=2"):
        _bind(masked_gru, ids, padding_id=2)
    with pytest.raises(ValueError, match=r"mask_id=99 is not an id of Embedding layer 'emb' \(input_dim=24\)"):
        _bind(linear, ids, mask_id=99)
    with pytest.raises(ValueError, match="the model has no layer named 'nope'"):
        _bind(linear, ids, embedding_layer="nope")
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\) outputs shape \(1, 3\) but probe input 'input' has "
                                         r"9 token positions"):
        _bind(linear, ids, embedding_layer="head")
    with pytest.raises(ValueError, match="vocabulary= was given but no probe input is text"):
        keras.utils.set_random_seed(0)
        mlp = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        _bind(mlp, np.zeros((2, 4), np.float32), vocabulary=["a", "b"])
    with pytest.raises(ValueError, match="padding_id must be None or a token id"):
        text_lib.check_arguments(padding_id=-1)
    with pytest.raises(ValueError, match="padding_id=None .* needs mask_id="):
        text_lib.check_arguments(padding_id=None)
    with pytest.raises(TypeError, match=r"vocabulary\[1\] is 3 \(int\); expected a token string"):
        text_lib.check_arguments(vocabulary=["a", 3])
    with pytest.raises(TypeError, match="vocabulary must be a list of token strings"):
        text_lib.check_arguments(vocabulary="abc")
    with pytest.raises(ValueError, match="token_baseline must be 'padding', 'zeros' or a token id"):
        IntegratedGradients(token_baseline="unk")
    method = IntegratedGradients(token_baseline=V)
    with pytest.raises(ValueError, match=rf"token_baseline={V} is not a token id of text input 'input'"):
        method.setup(adapter, adapter.probe)
    background = ExpectedGradients(background=ids.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match="the background of text input 'input' must hold token ids"):
        background.setup(adapter, adapter.probe)


def test_vocabulary_from_a_text_vectorization_layer_and_tokens(linear):
    linear = linear[0]
    vectorize = keras.layers.TextVectorization(max_tokens=V, output_sequence_length=T)
    vectorize.adapt(["the cat sat on the mat", "a dog ran far", "the end"])
    ids = np.asarray(vectorize(["the cat sat", "a dog ran far away"]))
    adapter = _bind(linear, ids, vocabulary=vectorize)
    text = adapter.probe.text["input"]
    assert text.vocabulary == tuple(vectorize.get_vocabulary())
    tokens = adapter.probe.tokens(0)
    assert list(tokens[0][:3]) == ["the", "cat", "sat"] and tokens[0][3] == ""
    assert adapter.probe.padding(0)[0].tolist() == [False] * 3 + [True] * (T - 3)


def test_a_text_and_a_float_input_are_integrated_jointly():
    keras.utils.set_random_seed(6)
    ids = keras.Input((T,), dtype="int32", name="ids")
    features = keras.Input((3,), name="features")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(V, D)(ids))
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([pooled, features]))
    model = keras.Model([ids, features], keras.layers.Dense(3)(h))
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    probe = as_probe_set([IDS, x])
    adapter = adapt(model, probe)
    text_lib.resolve(adapter, probe)
    assert adapter.probe.modality(0) == "text" and adapter.probe.modality(1) == "tabular"
    method = IntegratedGradients()
    method.setup(adapter, adapter.probe)
    tokens, values = method.attribute(adapter.probe.inputs, TARGET)
    assert tokens.shape == (6, T) and values.shape == (6, 3) and np.all(tokens[IDS == 0] == 0)
    rows = np.arange(6)
    f_x = model.predict([IDS, x], verbose=0)[rows, TARGET]
    f_base = model.predict([np.zeros_like(IDS), np.zeros_like(x)], verbose=0)[rows, TARGET]
    np.testing.assert_allclose(tokens.sum(axis=1) + values.sum(axis=1), f_x - f_base, rtol=0.01, atol=1e-5)
    # The float input's gradient is the model's own, at the probe's embeddings.
    saliency = Saliency(absolute=False)
    saliency.setup(adapter, adapter.probe)
    _, grads = saliency.space.gradients([IDS, x], saliency.space.points([IDS, x]), TARGET)
    import tensorflow as tf  # the reference: the model's own gradient with respect to the float input

    xs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = tf.gather(model([tf.constant(IDS), xs]), TARGET, axis=1, batch_dims=1)
    np.testing.assert_allclose(grads[1], tape.gradient(out, xs).numpy(), rtol=1e-5, atol=1e-7)


def test_the_callback_checks_its_text_arguments_before_training():
    import tb_xai

    with pytest.raises(ValueError, match="padding_id must be None or a token id .* received: '0'"):
        tb_xai.AttributionCallback("unused", IDS, padding_id="0")
    with pytest.raises(TypeError, match="embedding_layer must be a layer name"):
        tb_xai.AttributionCallback("unused", IDS, embedding_layer=3)
    with pytest.raises(ValueError, match="mask_id must be None or a token id"):
        tb_xai.AttributionCallback("unused", IDS, mask_id=True)
