"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman, 2014, arXiv:1312.6034)."""

from __future__ import annotations

from typing import List

import numpy as np

from tb_xai.methods.base import AttributionMethod


class Saliency(AttributionMethod):
    """The gradient of the explained output with respect to each input feature.

    Args:
        absolute: return |gradient| (the original saliency map) instead of the signed gradient.
        name: the logged name.

    Example:
        >>> tb_xai.AttributionCallback(log_dir, probe, methods=[Saliency(absolute=False)])
    """

    name = "saliency"

    def __init__(self, absolute: bool = True, name=None):
        super().__init__(name)
        self.absolute = bool(absolute)

    def config(self):
        return {"absolute": self.absolute}

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        _, grads = self.model.gradients(inputs, target)
        return [np.abs(g) if self.absolute else g for g in grads]
