"""Grad-CAM (Selvaraju et al., 2017, arXiv:1610.02391)."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE
from tb_xai.methods.base import AttributionMethod


class GradCAM(AttributionMethod):
    """A convolution layer's channels weighted by their mean gradient, ReLU'd and upsampled to the input.

    Args:
        layer: the convolution layer's name; by default the last convolution the model calls.
        name: the logged name.

    The attribution of an (H, W, C) image is an (H, W) map; of a (length, C) sequence, a (length,) map.
    """

    name = "grad_cam"
    modalities = (IMAGE, SEQUENCE)

    def __init__(self, layer: Optional[str] = None, name=None):
        super().__init__(name)
        self.layer = layer
        self._layer_name: Optional[str] = None

    def config(self):
        return {"layer": self._layer_name or self.layer}

    def attribution_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        if len(probe.inputs) != 1:
            raise ValueError(
                f"{self.name} explains a single image or sequence input; the probe has inputs {probe.names}"
            )
        convs = model.conv_layers()
        if self.layer is None:
            if not convs:
                raise ValueError(
                    f"{self.name} needs a convolution layer, and the model has none; use saliency or "
                    "integrated_gradients, or name a layer with GradCAM(layer=...)"
                )
            self._layer_name = convs[-1][0]
        else:
            self._layer_name = self.layer
        # Trace now, so a layer that does not exist or is not spatial fails before training goes on.
        act, _ = model.layer_gradients(self._layer_name, [a[:1] for a in probe.inputs], np.zeros(1, np.int32))
        if act.ndim != probe.inputs[0].ndim:
            raise ValueError(
                f"{self.name}: layer {self._layer_name!r} outputs shape {act.shape[1:]}, which has no spatial "
                f"layout matching the input {probe.inputs[0].shape[1:]}; name a convolution layer"
            )

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        act, grads = self.model.layer_gradients(self._layer_name, inputs, target)
        spatial_axes = tuple(range(1, act.ndim - 1))
        weights = grads.mean(axis=spatial_axes, keepdims=True)
        cam = np.maximum((act * weights).sum(axis=-1), 0.0)
        return [self.model.resize(cam, inputs[0].shape[1:-1])]
