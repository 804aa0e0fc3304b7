"""Expected gradients (Erion et al., 2021, arXiv:1906.10670): integrated gradients averaged over a background.

The idea behind shap's GradientExplainer, computed through the adapter's batched gradients: no TensorFlow
gradient registry is touched (unlike shap's DeepExplainer, which patches it and can break later training).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from tb_xai.methods.background import Background, BackgroundLike, as_background
from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.methods.coalitions import joint_probe_keys, probe_generator


class ExpectedGradients(AttributionMethod):
    """E over background rows b and alpha ~ U(0, 1) of grad f(b + alpha (x - b)) * (x - b).

    A Monte Carlo estimate with `samples` (background row, alpha) draws per probe; the attributions of a probe
    sum to f(x) - E[f(background)] in expectation. A probe's draws depend only on the seed and its
    values.

    Multi-input models are explained jointly: a draw takes one background row of every input and one alpha,
    and moves all inputs along the same straight path from the background row to the probe, so the
    attributions of all inputs together sum to f(x) - E[f(background)] in expectation (one array per input).

    Cost: `samples` forward+backward passes per probe.

    Args:
        background: "probe", an array of rows (one per input, as a list or dict, for multi-input models), or
            a `Background` (e.g. `Background.kmeans(x_train, 50)`); weighted backgrounds draw rows in
            proportion to their weights.
        samples: draws per probe (shap's GradientExplainer default, 200).
        seed: seed of the draws.
        name: the logged name.

    Example:
        >>> ExpectedGradients(background=x_train[:100], samples=100)
    """

    name = "expected_gradients"

    def __init__(self, background: BackgroundLike = "probe", samples: int = 200, seed: int = 0,
                 name: Optional[str] = None):
        super().__init__(name)
        check_positive_int(samples, "samples")
        self.background_spec = as_background(background)
        self.samples = int(samples)
        self.seed = int(seed)
        self.background: Optional[Background] = None

    def config(self):
        config = {"samples": self.samples, "seed": self.seed}
        config.update((self.background or self.background_spec).config())
        return config

    def rows_per_probe(self) -> int:
        return self.samples

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        self.background = self.background_spec.bind(probe, self.name)

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        xs = [x.astype(np.float32) for x in inputs]
        m, s = len(target), self.samples
        weights = self.background.weights
        references, alphas = [], []
        for key in joint_probe_keys(xs):
            rng = probe_generator(self.seed, key)
            references.append(rng.choice(len(weights), size=s, p=weights))
            alphas.append(rng.random(s))
        chosen = np.concatenate(references)
        alpha = np.stack(alphas).astype(np.float32)
        deltas, points = [], []
        for x, data in zip(xs, self.background.data):
            base = data[chosen].reshape((m, s) + x.shape[1:])
            delta = x[:, None] - base
            deltas.append(delta)
            points.append((base + alpha.reshape((m, s) + (1,) * (x.ndim - 1)) * delta).reshape((m * s,) + x.shape[1:]))
        _, grads = self.model.gradients(points, np.repeat(target, s))
        return [(g.reshape(delta.shape) * delta).mean(axis=1) for g, delta in zip(grads, deltas)]
