"""Perturbation methods and Grad-CAM on text inputs: tokens are the features, a removed token takes the mask
id, padding stays padding and gets exactly 0, held inputs (padding masks) follow the token input.

The probes' text fields are set by hand here (the callback fills them from the model and its arguments).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import keras
import numpy as np
import pytest

from tb_xai.backend import adapt
from tb_xai.methods.grad_cam import GradCAM
from tb_xai.methods.kernel_shap import KernelShap
from tb_xai.methods.lime_method import Lime
from tb_xai.methods.occlusion import Occlusion
from tb_xai.methods.segmentation import Segmentation
from tb_xai.probe import ProbeSet, TextInput, as_probe_set

VOCAB, T, PAD, MASK = 24, 10, 0, 1


def text_probe(ids, **text) -> ProbeSet:
    probe = as_probe_set(ids)
    return dataclasses.replace(probe, text={"input": TextInput(padding_id=PAD, mask_id=MASK, **text)})


def token_ids(n, lengths, seed=0):
    ids = np.random.default_rng(seed).integers(2, VOCAB, (n, T)).astype(np.int32)
    for row, length in zip(ids, lengths):
        row[length:] = PAD
    return ids


class Recorder:
    """Wraps an adapter's predict and keeps every array the model is given."""

    def __init__(self, adapter):
        self.adapter, self.rows = adapter, []
        self._predict = adapter.predict
        adapter.predict = self

    def __call__(self, inputs, batch_size=None):
        self.rows.append([np.array(a) for a in inputs])
        return self._predict(inputs, batch_size)

    def seen(self, i=0):
        return np.concatenate([r[i] for r in self.rows])


def conv_text_model(seed=0, padding="same"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 8)(inputs)
    h = keras.layers.Conv1D(8, 3, padding=padding, activation="relu", name="conv")(h)
    h = keras.layers.GlobalMaxPooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


@pytest.fixture(scope="module")
def conv_text():
    """An untrained Embedding + Conv1D model with linear outputs, and probes with 6, 8, 3 tokens and none."""
    model = conv_text_model()
    ids = token_ids(4, [6, 8, 3, 0])
    return model, ids


def exact_shapley(adapter, ids, target, mask=MASK):
    """Shapley values of the non-padding tokens of one probe by enumeration: v(S) = the target output with the
    tokens outside S set to the mask id."""
    positions = np.flatnonzero(ids != PAD)
    k = len(positions)
    subsets = np.array(list(itertools.product([False, True], repeat=k)), dtype=bool)
    rows = np.repeat(ids[None], len(subsets), axis=0)
    for s, keep in enumerate(subsets):
        rows[s, positions[~keep]] = mask
    values = adapter.predict([rows])[:, target].astype(np.float64)
    index = {tuple(s): v for s, v in zip(subsets, values)}
    phi = np.zeros(T)
    for j, position in enumerate(positions):
        total = 0.0
        for keep, value in index.items():
            if keep[j]:
                continue
            size = sum(keep)
            with_j = list(keep)
            with_j[j] = True
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            total += weight * (index[tuple(with_j)] - value)
        phi[position] = total
    return phi


def test_kernel_shap_on_tokens_equals_exact_shapley_values(conv_text):
    model, ids = conv_text
    probe = text_probe(ids[:2])  # 6 and 8 tokens
    adapter = adapt(model, probe)
    target = np.array([0, 2], dtype=np.int32)
    exact = np.stack([exact_shapley(adapter, row, t) for row, t in zip(ids[:2], target)])
    assert np.abs(exact).max() > 1e-3  # the model is not flat around these probes
    for engine in ("batched", "reference"):  # ours, and shap.KernelExplainer on the same coalitions
        method = KernelShap(samples=2 ** 8 - 2, engine=engine)  # every coalition of 8 tokens
        method.setup(adapter, adapter.probe)
        phi = method.attribute(adapter.probe.inputs, target)[0]
        np.testing.assert_allclose(phi, exact, atol=1e-5 * np.abs(exact).max() + 1e-6, err_msg=engine)
    # A sampled budget (128 of the 254 coalitions of the 8-token probe) stays close: about 4% off here, as
    # shap.KernelExplainer at the same budget.
    method = KernelShap(samples=128)
    method.setup(adapter, adapter.probe)
    phi = method.attribute(adapter.probe.inputs, target)[0]
    error = np.linalg.norm(phi[1] - exact[1]) / np.linalg.norm(exact[1])
    assert error < 0.1, error


def test_perturbed_rows_hold_only_probe_ids_and_the_mask_id(conv_text):
    model, ids = conv_text
    probe = text_probe(ids)
    adapter = adapt(model, probe)
    padding = ids == PAD
    target = np.zeros(len(ids), np.int32)
    methods = [KernelShap(samples=40), Lime(samples=300), Lime(samples=50, engine="reference"),
               Occlusion(window=3, stride=2), Lime(samples=200, segmentation=Segmentation(window=2))]
    for method in methods:
        recorder = Recorder(adapter)
        try:
            method.setup(adapter, adapter.probe)
            maps = method.attribute(adapter.probe.inputs, target)[0]
        finally:
            adapter.predict = recorder._predict
        rows = recorder.seen()
        assert rows.dtype == np.int32 and len(rows) > len(ids)
        # Each row is one probe with some of its tokens set to the mask id and its padding untouched.
        same = rows[:, None, :] == ids[None]
        masked = (rows[:, None, :] == MASK) & ~padding[None]
        assert (same | masked).all(axis=2).any(axis=1).all(), method
        assert (rows == MASK).any(), method
        assert maps.shape == ids.shape
        assert np.all(maps[padding] == 0), method
        assert np.all(maps[3] == 0)  # a probe that is all padding
        assert np.abs(maps[~padding]).max() > 0, method


def test_occlusion_of_token_windows_by_hand(conv_text):
    model, ids = conv_text
    probe = text_probe(ids[:1])  # 6 tokens, 4 padding
    adapter = adapt(model, probe)
    method = Occlusion(window=2, stride=2)
    method.setup(adapter, adapter.probe)
    got = method.attribute(adapter.probe.inputs, np.array([1], np.int32))[0][0]
    full = adapter.predict([ids[:1]])[0, 1]
    expected = np.zeros(T)
    for start in range(0, T, 2):
        row = ids[0].copy()
        window = slice(start, start + 2)
        row[window] = np.where(row[window] == PAD, PAD, MASK)
        expected[window] = full - adapter.predict([row[None]])[0, 1]
    expected[ids[0] == PAD] = 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert method.config()["mask_id"] == MASK


def test_lime_on_tokens_agrees_with_lime_text_explainer(conv_text):
    model, ids = conv_text
    probe = text_probe(ids[:2])
    adapter = adapt(model, probe)
    target = np.array([0, 1], np.int32)
    maps = {}
    for engine in ("batched", "reference"):  # ours, and lime's LimeTextExplainer(bow=False)
        method = Lime(samples=3000, engine=engine, seed=3)
        method.setup(adapter, adapter.probe)
        maps[engine] = method.attribute(adapter.probe.inputs, target)[0]
    for ours, theirs in zip(maps["batched"], maps["reference"]):
        tokens = theirs != 0
        assert np.corrcoef(ours[tokens], theirs[tokens])[0, 1] > 0.9
        np.testing.assert_allclose(ours, theirs, atol=0.25 * np.abs(theirs).max())


def test_seeded_text_methods_are_reproducible_and_keyed_on_the_probe(conv_text):
    model, ids = conv_text
    adapter = adapt(model, text_probe(ids))
    reversed_ids = ids[::-1].copy()
    target = np.array([0, 1, 2, 0], np.int32)
    for make in (lambda: KernelShap(samples=30, seed=4), lambda: Lime(samples=200, seed=4)):
        first, second = make(), make()
        first.setup(adapter, adapter.probe)
        second.setup(adapter, adapter.probe)
        a = first.attribute([ids], target)[0]
        np.testing.assert_array_equal(a, second.attribute([ids], target)[0])
        np.testing.assert_array_equal(a, first.attribute([reversed_ids], target[::-1])[0][::-1])
        other = make()
        other.seed = 5
        other.setup(adapter, adapter.probe)
        assert not np.array_equal(a, other.attribute([ids], target)[0])


def test_a_background_named_for_a_text_input_is_refused(conv_text):
    model, ids = conv_text
    adapter = adapt(model, text_probe(ids))
    with pytest.raises(ValueError, match="text input 'input' is perturbed by replacing tokens with its mask id"):
        KernelShap(background={"input": ids}).setup(adapter, adapter.probe)


@pytest.fixture(scope="module")
def planted():
    """A trained Embedding + Conv1D ('valid': the map has T - 2 positions) that predicts class 1 when token 7
    appears; probes carry token 7 at known positions, then padding."""
    rng = np.random.default_rng(0)
    n = 1200
    ids = rng.integers(8, VOCAB, (n, T)).astype(np.int32)
    lengths = rng.integers(5, T + 1, n)
    labels = rng.integers(0, 2, n)
    where = rng.integers(0, lengths)
    ids[labels == 1, where[labels == 1]] = 7
    ids[np.arange(T)[None, :] >= lengths[:, None]] = PAD
    model = conv_text_model(seed=1, padding="valid")
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ids, labels, epochs=6, batch_size=64, verbose=0)
    probe_ids = token_ids(4, [9, 7, 6, 10], seed=5)
    probe_ids[probe_ids == 7] = 9
    probe_ids[:, :] = np.where(probe_ids == PAD, PAD, np.maximum(probe_ids, 8))
    positions = np.array([1, 6, 3, 8])
    probe_ids[np.arange(4), positions] = 7
    return model, probe_ids, positions


def test_grad_cam_on_a_conv1d_text_model_highlights_the_planted_token(planted):
    model, ids, positions = planted
    adapter = adapt(model, text_probe(ids))
    assert (adapter.predict([ids]).argmax(axis=1) == 1).all()  # the model learned the planted token
    method = GradCAM()
    method.setup(adapter, adapter.probe)
    assert method.config()["layer"] == "conv"
    maps = method.attribute(adapter.probe.inputs, np.ones(len(ids), np.int32))[0]
    assert maps.shape == ids.shape
    assert np.all(maps[ids == PAD] == 0)
    assert np.all(maps >= 0)
    peaks = maps.argmax(axis=1)
    assert np.all(np.abs(peaks - positions) <= 1), (peaks, positions)


def test_grad_cam_on_a_float_sequence_model_resizes_the_conv_axis():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 2))
    h = keras.layers.Conv1D(4, 5, strides=2, activation="relu")(inputs)  # 4 positions
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    x = np.random.default_rng(0).normal(size=(3, 12, 2)).astype(np.float32)
    adapter = adapt(model, as_probe_set(x))
    method = GradCAM()
    method.setup(adapter, adapter.probe)
    maps = method.attribute(adapter.probe.inputs, np.zeros(3, np.int32))[0]
    assert maps.shape == (3, 12) and np.all(maps >= 0)


def dict_text_model(seed=0):
    """keras_hub-style inputs: token_ids and padding_mask, plus a float `meta` input."""
    keras.utils.set_random_seed(seed)
    token_ids = keras.Input((T,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((T,), dtype="int32", name="padding_mask")
    meta = keras.Input((3,), name="meta")
    h = keras.layers.Embedding(VOCAB, 8)(token_ids)
    h = keras.layers.Conv1D(6, 3, padding="same", activation="tanh", name="conv")(h)
    mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
    h = keras.layers.GlobalAveragePooling1D()(h * mask)
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="tanh")(meta)])
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask, "meta": meta},
                       keras.layers.Dense(2)(h))


def test_dict_model_with_a_padding_mask_input():
    model = dict_text_model()
    ids = token_ids(3, [7, 10, 4], seed=2)
    ids[ids == PAD] = 5  # padding is marked by the mask input alone, not by an id
    mask = np.ones((3, T), np.int32)
    mask[0, 7:] = 0
    mask[2, 4:] = 0
    meta = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    probe = as_probe_set({"token_ids": ids, "padding_mask": mask, "meta": meta})
    probe = dataclasses.replace(probe, held=("padding_mask",), text={
        "token_ids": TextInput(padding_id=None, mask_id=MASK, padding_input="padding_mask")})
    adapter = adapt(model, probe)
    target = np.array([0, 1, 0], np.int32)
    padding = mask == 0
    methods = [KernelShap(samples=2 ** 10 - 2), KernelShap(samples=64, engine="reference"), Lime(samples=300),
               Lime(samples=100, engine="reference"), Occlusion(window=2), GradCAM()]
    for method in methods:
        recorder = Recorder(adapter)
        try:
            method.setup(adapter, adapter.probe)
            maps = method.attribute(adapter.probe.inputs, target)
        finally:
            adapter.predict = recorder._predict
        assert maps[1] is None, method  # the padding mask is never explained
        assert maps[0].shape == (3, T) and np.all(maps[0][padding] == 0), method
        assert np.abs(maps[0][~padding]).max() > 0, method
        if isinstance(method, GradCAM):
            assert maps[2] is None  # the meta branch does not reach the conv
            continue
        assert maps[2].shape == (3, 3) and np.abs(maps[2]).max() > 0, method
        # The padding mask and token rows the model saw: the mask of the very probe a token row perturbs.
        seen_ids, seen_mask = recorder.seen(0), recorder.seen(1)
        of = ((seen_ids[:, None] == ids[None]) | (seen_ids[:, None] == MASK) & ~padding[None]).all(axis=2)
        assert of.any(axis=1).all(), method
        assert all(any((seen_mask[r] == mask[p]).all() for p in np.flatnonzero(of[r])) for r in range(len(seen_ids)))
        assert (seen_ids[:, ~padding.any(axis=0)] == MASK).any(), method
    # KernelSHAP at every coalition: the token attributions add up to the output change with all tokens masked.
    shap = KernelShap(samples=2 ** 10 - 2)
    shap.setup(adapter, adapter.probe)
    phi = shap.attribute(adapter.probe.inputs, target)[0]
    masked = np.where(padding, ids, MASK)
    drop = (adapter.predict([ids, mask, meta]) - adapter.predict([masked, mask, meta]))[np.arange(3), target]
    np.testing.assert_allclose(phi.sum(axis=1), drop, rtol=1e-4, atol=1e-6)


def test_embedding_lstm_with_mask_zero():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=True)(inputs)
    h = keras.layers.LSTM(6)(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    ids = token_ids(3, [5, 10, 2], seed=4)
    adapter = adapt(model, text_probe(ids))
    target = np.array([1, 0, 1], np.int32)
    exact = exact_shapley(adapter, ids[0], 1)
    for method in (KernelShap(samples=2 ** 10 - 2), Lime(samples=300), Occlusion(window=1)):
        method.setup(adapter, adapter.probe)
        maps = method.attribute(adapter.probe.inputs, target)[0]
        assert maps.shape == ids.shape and np.all(maps[ids == PAD] == 0), method
        assert np.abs(maps[ids != PAD]).min() >= 0 and np.abs(maps[ids != PAD]).max() > 0, method
        if isinstance(method, KernelShap):
            np.testing.assert_allclose(maps[0], exact, atol=1e-5 * np.abs(exact).max() + 1e-6)
    with pytest.raises(ValueError, match="needs a convolution layer"):
        GradCAM().setup(adapter, adapter.probe)


class Positions(keras.layers.Layer):
    """Learned positional embeddings added to the token embeddings."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal")

    def call(self, x):
        return x + self.table


def test_transformer_encoder_block_with_attention():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T,), dtype="int32")
    h = Positions()(keras.layers.Embedding(VOCAB, 8)(inputs))
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 4)(h, h))
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(8, activation="gelu")(h))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    ids = token_ids(2, [7, 4], seed=6)
    adapter = adapt(model, text_probe(ids))
    target = np.array([0, 1], np.int32)
    exact = np.stack([exact_shapley(adapter, row, t) for row, t in zip(ids, target)])
    method = KernelShap(samples=2 ** 7 - 2)
    method.setup(adapter, adapter.probe)
    np.testing.assert_allclose(method.attribute(adapter.probe.inputs, target)[0], exact,
                               atol=1e-5 * np.abs(exact).max() + 1e-6)
    # Occlusion of one token is the output drop with that token masked: by hand for the first token.
    occlusion = Occlusion(window=1)
    occlusion.setup(adapter, adapter.probe)
    maps = occlusion.attribute(adapter.probe.inputs, target)[0]
    masked = ids[:1].copy()
    masked[0, 0] = MASK
    expected = adapter.predict([ids[:1]])[0, 0] - adapter.predict([masked])[0, 0]
    np.testing.assert_allclose(maps[0, 0], expected, rtol=1e-4, atol=1e-6)
    assert np.all(maps[ids == PAD] == 0)
