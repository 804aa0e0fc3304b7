"""Expected gradients (Erion et al., 2021, arXiv:1906.10670): integrated gradients averaged over a background.

The idea behind shap's GradientExplainer, computed through the adapter's batched gradients: no TensorFlow
gradient registry is touched (unlike shap's DeepExplainer, which patches it and can break later training).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from tb_xai.methods.background import Background, BackgroundLike, as_background
from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.methods.coalitions import probe_generator, probe_key


class ExpectedGradients(AttributionMethod):
    """E over background rows b and alpha ~ U(0, 1) of grad f(b + alpha (x - b)) * (x - b).

    A Monte Carlo estimate with `samples` (background row, alpha) draws per probe; the attributions of a probe
    sum to f(x) - E[f(background)] in expectation. A probe's draws depend only on the seed and its
    values.

    Cost: `samples` forward+backward passes per probe.

    Args:
        background: "probe", an array of rows, or a `Background` (e.g. `Background.kmeans(x_train, 50)`);
            weighted backgrounds draw rows in proportion to their weights.
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
        x = inputs[0].astype(np.float32)
        m, s = len(x), self.samples
        data, weights = self.background.data, self.background.weights
        references, alphas = [], []
        for row in x:
            rng = probe_generator(self.seed, probe_key(row))
            references.append(rng.choice(len(data), size=s, p=weights))
            alphas.append(rng.random(s))
        base = data[np.concatenate(references)].reshape((m, s) + x.shape[1:])
        delta = x[:, None] - base
        alpha = np.stack(alphas).astype(np.float32).reshape((m, s) + (1,) * (x.ndim - 1))
        points = (base + alpha * delta).reshape((m * s,) + x.shape[1:])
        _, (grads,) = self.model.gradients([points], np.repeat(target, s))
        return [(grads.reshape(delta.shape) * delta).mean(axis=1)]
