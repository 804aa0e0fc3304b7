"""Gradient x input (Shrikumar et al., 2016, arXiv:1605.01713)."""

from __future__ import annotations

from typing import List

import numpy as np

from tb_xai.methods.base import AttributionMethod


class GradientXInput(AttributionMethod):
    """The input times the gradient of the explained output: a first-order contribution per feature.

    A text input is taken at its Embedding layer's output: a token's value is the signed sum over the embedding
    dimension of embedding x gradient, 0 at padding.
    """

    name = "gradient_x_input"

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        points = self.space.points(inputs)
        _, grads = self.space.gradients(inputs, points, target)
        return self.space.reduce([None if g is None else g * p for g, p in zip(grads, points)], inputs, how="sum")
