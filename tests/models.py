"""Tiny Keras models of every kind the methods must handle, built without training (weights are seeded)."""

from __future__ import annotations

import keras
import numpy as np


def mlp(n_features=6, n_classes=3, activation="tanh", final="softmax", seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(12, activation=activation),
        keras.layers.Dense(n_classes, activation=final),
    ])
    return model


def cnn(shape=(8, 8, 1), n_classes=4, seed=0, sequential=False):
    keras.utils.set_random_seed(seed)
    layers = [
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(n_classes, activation="softmax"),
    ]
    if sequential:
        return keras.Sequential([keras.Input(shape)] + layers)
    inputs = keras.Input(shape)
    h = inputs
    for layer in layers:
        h = layer(h)
    return keras.Model(inputs, h)


class SubclassedCNN(keras.Model):
    def __init__(self, n_classes=4):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="sub_conv")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(n_classes, activation="softmax")

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def two_inputs_two_outputs(seed=0):
    """Inputs 'a' (5,) and 'b' (3,); outputs 'cls' (softmax 3) and 'reg' (linear 1)."""
    keras.utils.set_random_seed(seed)
    a = keras.Input((5,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([a, b]))
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    return keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})


def random_inputs(shape, n, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + tuple(shape)).astype(np.float32)


def conv1d(shape=(16, 2), n_classes=3, seed=0):
    """A Conv1D classifier on (T, C) sequences."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    h = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_t")(inputs)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(h))


#: method name -> a quick but faithful configuration (seeded sampling methods keep their default seed): the
#: contract test and the backend matrix explain with these.
QUICK_METHODS = {
    "saliency": {},
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 16},
    "smoothgrad": {"samples": 8},
    "grad_cam": {},
    "expected_gradients": {"samples": 16},
    "kernel_shap": {"samples": 64},
    "lime": {"samples": 200},
    "occlusion": {"window": 2},
}
