"""Every gradient method on real text architectures with int32 token ids, through AttributionCallback.

Embedding + LSTM (mask_zero, trained with fit), Embedding + bidirectional GRU, Embedding + Conv1D, a Transformer
encoder block (MultiHeadAttention, positional embeddings) in a subclassed model, an Embedding inside a nested
backbone, a dict-input model with a padding mask, and a keras_hub BertBackbone with random weights at tiny
sizes: each logs [probes, T] per method, exactly 0 at padding, with the TOKENS tag beside the probe.
"""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest

import tb_xai
from tb_xai import metadata
from tb_xai.methods import ExpectedGradients, GradientXInput, IntegratedGradients, Saliency, SmoothGrad

V, T, P = 40, 12, 5
VOCABULARY = ["<pad>"] + [f"w{i}" for i in range(1, V)]


def _methods():
    return [Saliency(), GradientXInput(), IntegratedGradients(), SmoothGrad(samples=4),
            ExpectedGradients(samples=8)]


def _ids(n=P, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, size=(n, T)).astype(np.int32)
    for row, length in enumerate(rng.integers(3, T, size=n)):
        ids[row, length:] = 0
    return ids


IDS = _ids()


def _log_one_step(model, probe, log_dir, **arguments):
    """The callback's own lifecycle on a built model (what fit calls, without the cost of training)."""
    callback = tb_xai.AttributionCallback(log_dir, probe, methods=_methods(), quality=False, **arguments)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)
    callback.on_train_end()
    return callback, tb_xai.load(log_dir)


def _check_run(callback, run, ids, input_name="input", padding=None):
    assert run.failures() == []
    padding = ids == 0 if padding is None else padding
    assert run.modality(input_name) == metadata.TEXT
    for method in ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "expected_gradients"):
        values = run.attributions(method, input_name)[-1]
        assert values.shape == ids.shape, method
        assert np.all(values[padding] == 0), method
        assert np.all(np.abs(np.where(padding, 0, values)).sum(axis=1) > 0), method  # every probe's tokens matter
    ig = next(m for m in callback.methods if m.name == "integrated_gradients")
    assert ig.diagnostics()["probes_over_tolerance"] == 0


def _tokens_tag(run_dir, input_name="input"):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    for path in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == metadata.tokens_tag(input_name):
                    return event.step, tensor_util.make_ndarray(value.tensor), value.metadata
    return None


class TokenAndPosition(keras.layers.Layer):
    """Token embeddings plus learned position embeddings (an Embedding fed by positions, not by tokens)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(V, 8, name="token_emb")
        self.positions = keras.layers.Embedding(T, 8, name="pos_emb")

    def call(self, ids):
        positions = keras.ops.arange(keras.ops.shape(ids)[-1])
        return self.tokens(ids) + self.positions(positions)[None]


class Encoder(keras.Model):
    """A subclassed Transformer encoder classifier: attention, residuals, LayerNorm, feed-forward."""

    def __init__(self):
        super().__init__()
        self.embed = TokenAndPosition(name="embed")
        self.attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
        self.norm_a = keras.layers.LayerNormalization()
        self.ffn = keras.Sequential([keras.layers.Dense(16, activation="gelu"), keras.layers.Dense(8)])
        self.norm_b = keras.layers.LayerNormalization()
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(3)

    def call(self, ids):
        h = self.embed(ids)
        mask = keras.ops.cast(ids != 0, "bool")
        h = self.norm_a(h + self.attention(h, h, attention_mask=mask[:, None, :]))
        h = self.norm_b(h + self.ffn(h))
        return self.head(self.pool(h))


@pytest.fixture(scope="module")
def trained_lstm(tmp_path_factory):
    """Embedding(mask_zero) + LSTM trained two epochs with the callback in fit."""
    keras.utils.set_random_seed(0)
    x = _ids(96, seed=1)
    y = (x == 7).any(axis=1).astype(np.int32)
    model = keras.Sequential([keras.Input((T,), dtype="int32"), keras.layers.Embedding(V, 8, mask_zero=True),
                              keras.layers.LSTM(8), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    log_dir = str(tmp_path_factory.mktemp("lstm"))
    callback = tb_xai.AttributionCallback(log_dir, x[:P], labels=y[:P], methods=_methods(), vocabulary=VOCABULARY,
                                          quality=False)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    return callback, tb_xai.load(log_dir), x[:P]


def test_an_lstm_with_mask_zero_trained_with_the_callback(trained_lstm):
    callback, run, ids = trained_lstm
    for method in run.methods:
        assert run.attributions(method).shape == (2, P, T)
        assert np.all(run.attributions(method)[:, ids == 0] == 0)
    _check_run(callback, run, ids)
    step, tokens, tag = _tokens_tag(callback.run_dir)
    assert step == 0
    assert tokens.shape == (P, T)
    assert [t.decode() for t in tokens[0]] == [VOCABULARY[i] for i in ids[0]]
    np.testing.assert_array_equal(run.probe(), ids)


def test_bidirectional_gru_and_conv1d(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8, mask_zero=True)(inputs)
    gru = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Bidirectional(keras.layers.GRU(4))(h)))
    h = keras.layers.Embedding(V, 8)(inputs)
    h = keras.layers.Conv1D(6, 3, padding="same", activation="relu")(h)
    conv = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling1D()(h)))
    for name, model in (("gru", gru), ("conv", conv)):
        callback, run = _log_one_step(model, IDS, str(tmp_path / name), vocabulary=VOCABULARY)
        _check_run(callback, run, IDS)


def test_a_subclassed_transformer_encoder_with_positional_embeddings(tmp_path):
    keras.utils.set_random_seed(2)
    model = Encoder()
    model(IDS[:1])
    callback, run = _log_one_step(model, IDS, str(tmp_path / "encoder"))
    _check_run(callback, run, IDS)
    # The token embedding, found inside a layer inside a subclassed model; not the position embedding.
    assert callback._adapter.probe.text["input"].embedding == "embed/token_emb"
    with pytest.raises(ValueError, match=r"embedding_layer 'pos_emb' \(embed/pos_emb\) is not fed by a token input"):
        _log_one_step(model, IDS, str(tmp_path / "bad"), embedding_layer="pos_emb")


def test_an_embedding_inside_a_nested_backbone(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8, mask_zero=True, name="words")(inputs)
    backbone = keras.Model(inputs, keras.layers.LSTM(6, return_sequences=True)(h), name="backbone")
    model = keras.Sequential([keras.Input((T,), dtype="int32"), backbone, keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(2, activation="softmax")])
    callback, run = _log_one_step(model, IDS, str(tmp_path / "nested"), embedding_layer="backbone/words")
    _check_run(callback, run, IDS)
    assert callback._adapter.probe.text["input"].embedding == "backbone/words"


def test_a_dict_input_model_with_a_padding_mask(tmp_path):
    keras.utils.set_random_seed(4)
    ids = keras.Input((T,), dtype="int32", name="token_ids")
    mask = keras.Input((T,), dtype="int32", name="padding_mask")
    h = keras.layers.Embedding(V, 8)(ids)
    h = h * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(3)(h))
    token_ids = IDS.copy()
    token_ids[IDS == 0] = 5  # the mask, not the ids, marks padding here
    probe = {"token_ids": token_ids, "padding_mask": (IDS != 0).astype(np.int32)}
    callback, run = _log_one_step(model, probe, str(tmp_path / "dict"))
    _check_run(callback, run, token_ids, "token_ids", padding=IDS == 0)
    assert callback.probe.held == ("padding_mask",)
    assert callback.probe.text["token_ids"].padding_input == "padding_mask"
    with pytest.raises(Exception):
        run.attributions("saliency", "padding_mask")  # held: never explained


def test_a_keras_hub_bert_backbone_with_random_weights(tmp_path):
    import keras_hub  # installed by tests/run.sh: a missing one fails this test, it never skips it
    keras.utils.set_random_seed(5)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=T)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None, dropout=0.0)
    probe = {"token_ids": IDS, "padding_mask": (IDS != 0).astype(np.int32), "segment_ids": np.zeros_like(IDS)}
    model(probe)
    callback, run = _log_one_step(model, probe, str(tmp_path / "bert"), vocabulary=VOCABULARY)
    _check_run(callback, run, IDS, "token_ids")
    assert set(callback.probe.held) == {"padding_mask", "segment_ids"}
    assert callback._adapter.probe.text["token_ids"].embedding.endswith("token_embedding")
