"""Grad-CAM (Selvaraju et al., 2017, arXiv:1610.02391)."""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE, TEXT
from tb_xai.methods.base import AttributionMethod

logger = logging.getLogger(__name__)


class GradCAM(AttributionMethod):
    """A feature map's channels weighted by their mean gradient, summed, ReLU'd and resized to the input.

    Args:
        layer: the feature map to explain: a layer name, a path through nested models
            ("mobilenetv2_1.00_224/out_relu"), or a keras Layer. Any layer the model calls whose output is
            spatial (batch, *spatial, channels) will do. By default, the last spatial output the model
            computes after a convolution, in call order: the map that feeds global pooling, flattening or the
            head (`out_relu` of MobileNetV2, `conv5_block3_out` of ResNet50, `top_activation` of EfficientNet).
        name: the logged name.

    The attribution of an (H, W, C) image is an (H, W) map; of a (length, C) sequence, a (length,) map. A
    text input (probes, T) of token ids feeding an Embedding is explained through the (batch, T', F) map of
    a Conv1D-style layer after the Embedding: Grad-CAM over T', linearly resized to the T token positions,
    a (T,) map with exactly 0 at padding. On a multi-input model each image, sequence or text input that
    reaches the layer gets the map, resized to its own size; inputs that do not reach it (a tabular branch,
    a padding mask) get none.

    Example:
        >>> tb_xai.AttributionCallback(log_dir, probe, methods=[GradCAM(layer="mobilenetv2_1.00_224/out_relu")])
    """

    name = "grad_cam"
    modalities = (IMAGE, SEQUENCE, TEXT)
    #: Grad-CAM differentiates to a layer, never to the inputs: disconnected input gradients do not matter.
    input_gradients = False

    def __init__(self, layer=None, name=None):
        super().__init__(name)
        if layer is not None and not isinstance(layer, str) and not hasattr(layer, "call"):
            raise TypeError(f"layer must be a layer name, a path 'outer/inner' or a keras Layer; received {layer!r}")
        self.layer = layer
        self._call = None
        self._explained: List[int] = []

    def config(self):
        requested = self.layer if self.layer is None or isinstance(self.layer, str) else self.layer.name
        config = {"layer": self._call.path if self._call is not None else requested}
        if self.probe is not None and len(self.probe.inputs) > 1:
            config["inputs"] = [self.probe.names[i] for i in self._explained]
        return config

    def attribution_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def setup(self, model, probe) -> None:
        spatial = [i for i in range(len(probe.inputs)) if probe.modality(i) in self.modalities and probe.explained(i)]
        if not spatial:
            raise ValueError(
                f"{self.name} explains image, sequence or text inputs, but the probe's inputs {probe.names} have "
                f"shapes {[a.shape[1:] for a in probe.inputs]}"
            )
        self.model, self.probe = model, probe
        if self.layer is None:
            call = None
            for rank in sorted({_map_rank(probe, i) for i in spatial}, reverse=True):
                try:
                    call = model.feature_map(rank)
                    break
                except LookupError:
                    continue
            if call is None:
                raise ValueError(
                    f"{self.name} needs a convolution layer, and the model has none that it calls before a spatial "
                    "output; use saliency or integrated_gradients, or name a layer with GradCAM(layer=...)"
                )
        else:
            call = model.find_layer(self.layer)
        if call.shape is None or len(call.shape) < 3:
            raise ValueError(
                f"{self.name}: layer {call.path!r} ({call.kind}) outputs shape "
                f"{None if call.shape is None else call.shape[1:]}, which has no spatial layout; name a layer "
                "whose output is (batch, *spatial, channels)"
            )
        floats = [i for i in spatial if probe.modality(i) != TEXT]
        reaching = set(model.input_names_reaching(call)) if floats else set()
        # Token ids have no gradient path to ask the backend about: a text input reaches the layer when
        # masking its tokens changes the layer's activations.
        reaching |= {probe.names[i] for i in spatial if probe.modality(i) == TEXT and _text_reaches(model, call, probe, i)}
        explained = [i for i in spatial if probe.names[i] in reaching and _map_rank(probe, i) == len(call.shape)]
        if not explained:
            raise ValueError(
                f"{self.name}: layer {call.path!r} outputs shape {call.shape[1:]}, but no image, sequence or text "
                f"input whose map has that rank reaches it (inputs reaching it: {sorted(reaching)})"
            )
        for i in explained:
            if probe.modality(i) == TEXT:
                continue
            if not np.issubdtype(probe.inputs[i].dtype, np.floating):
                raise ValueError(
                    f"{self.name} needs gradients, but probe input {probe.names[i]!r} has dtype "
                    f"{probe.inputs[i].dtype}: integer inputs have no gradient; pass float inputs"
                )
        if all(s == 1 for s in call.shape[1:-1]):
            logger.warning(
                "tb_xai: %s explains layer %r, whose map is %s: one cell, so every map is uniform. Give the model "
                "larger inputs, or name an earlier layer with GradCAM(layer=...)", self.name, call.path,
                "x".join(str(s) for s in call.shape[1:-1]))
        self._call, self._explained = call, explained
        # Trace now, so a layer the output does not depend on fails before training goes on.
        model.layer_gradients(call, [a[:1] for a in probe.inputs], np.zeros(1, np.int32))

    def attribute(self, inputs, target):
        """One map per explained input; None for an input that does not reach the layer."""
        maps = super().attribute(inputs, target)
        out: List[Optional[np.ndarray]] = [None] * len(inputs)
        for i, m in zip(self._explained, maps):
            out[i] = m
        return out

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        act, grads = self.model.layer_gradients(self._call, inputs, target)
        spatial_axes = tuple(range(1, act.ndim - 1))
        weights = grads.mean(axis=spatial_axes, keepdims=True)
        cam = np.maximum((act * weights).sum(axis=-1), 0.0)
        maps = []
        for i in self._explained:
            if self.probe.modality(i) != TEXT:
                maps.append(self.model.resize(cam, inputs[i].shape[1:-1]))
                continue
            resized = self.model.resize(cam, inputs[i].shape[1:])
            padding = dataclasses.replace(self.probe, inputs=list(inputs)).padding(i)
            maps.append(np.where(padding, 0.0, resized).astype(np.float32))
        return maps


def _map_rank(probe, i: int) -> int:
    """The rank (batch included) of the layer output that explains probe input `i`: an image's or a
    sequence's own, a text's embedded sequence (batch, T', features)."""
    return 3 if probe.modality(i) == TEXT else probe.inputs[i].ndim


def _text_reaches(model, call, probe, i: int) -> bool:
    """Whether text input `i` changes the activations of layer `call`: on a few probes, every non-padding
    token replaced by the mask id."""
    rows = [a[:8] for a in probe.inputs]
    target = np.zeros(len(rows[0]), np.int32)
    before = model.layer_gradients(call, rows, target)[0]
    masked = rows[i].copy()
    masked[~probe.padding(i)[:8]] = probe.text[probe.names[i]].mask_id
    after = model.layer_gradients(call, rows[:i] + [masked] + rows[i + 1:], target)[0]
    return not np.array_equal(before, after)
