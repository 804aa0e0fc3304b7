"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman, 2014, arXiv:1312.6034)."""

from __future__ import annotations

from typing import List

import numpy as np

from tb_xai.methods.base import AttributionMethod


class Saliency(AttributionMethod):
    """The gradient of the explained output with respect to each input feature.

    A text input is differentiated at its Embedding layer's output: a token's saliency is the L2 norm of the
    gradient over the embedding dimension (how strongly the output responds to any change of that token's
    embedding; a norm, so it is unsigned whatever `absolute` says), 0 at padding.

    Args:
        absolute: return |gradient| (the original saliency map) instead of the signed gradient.
        name: the logged name.

    Example:
        >>> tb_xai.AttributionCallback(log_dir, probe, methods=[Saliency(absolute=False)])
    """

    name = "saliency"
    probe_gradients = True

    def __init__(self, absolute: bool = True, name=None):
        super().__init__(name)
        self.absolute = bool(absolute)

    def config(self):
        return {"absolute": self.absolute}

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        space = self.space
        _, grads = space.gradients(inputs, space.points(inputs), target)
        grads = [g if g is None or space.is_text(i) or not self.absolute else np.abs(g) for i, g in enumerate(grads)]
        return space.reduce(grads, inputs, how="norm")
