"""Gradient x input (Shrikumar et al., 2016, arXiv:1605.01713)."""

from __future__ import annotations

from typing import List

import numpy as np

from tb_xai.methods.base import AttributionMethod


class GradientXInput(AttributionMethod):
    """The input times the gradient of the explained output: a first-order contribution per feature."""

    name = "gradient_x_input"

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        _, grads = self.model.gradients(inputs, target)
        return [g * x for g, x in zip(grads, inputs)]
