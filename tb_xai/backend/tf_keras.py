"""tf_keras (Keras 2) models on TensorFlow: the TensorFlow adapter with tf_keras's own layer classes.

A tf_keras model is called, differentiated and compiled exactly as a Keras 3 model on TensorFlow (its layers
are called through `Layer.call`, its tensors are TensorFlow's); only its layer classes are not Keras 3's.
"""

from __future__ import annotations

import tf_keras

from tb_xai.backend.tensorflow import TensorFlowModel

CONVOLUTIONS = tuple(
    getattr(tf_keras.layers, name)
    for name in (
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    )
    if hasattr(tf_keras.layers, name)
)


class TfKerasModel(TensorFlowModel):
    """A built tf_keras model, seen through one explained output head (see `KerasModel`)."""

    convolutions = CONVOLUTIONS
    embedding_types = (tf_keras.layers.Embedding,)


    def _discover(self):
        # A tf_keras Sequential model may (re)build its graph network inside a call, calling every layer once
        # symbolically before the real call; later calls do not. The second pass sees the calls every later
        # forward pass makes, so a layer call's index is the one injection will meet.
        super()._discover()
        return super()._discover()
