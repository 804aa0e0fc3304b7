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

    A text input is integrated in embedding space, from the background rows' token embeddings to the probe's
    at its Embedding layer's output (the probe's padding positions keep the probe's own tokens); a token's
    attribution is the signed sum over the embedding dimension, 0 at padding. Held inputs (padding masks) are
    the probe's own along the path.

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
        for i, name in enumerate(probe.names):
            if name not in probe.text:
                continue
            ids = self.background.data[i]
            input_dim = getattr(model.embedding_call(name).layer, "input_dim", None)
            if np.any(ids != np.round(ids)) or ids.min() < 0 or (input_dim is not None and ids.max() >= input_dim):
                raise ValueError(
                    f"{self.name}: the background of text input {name!r} must hold token ids (whole numbers in "
                    f"[0, {input_dim})), as the probe does; it holds values in [{ids.min()}, {ids.max()}]"
                    f"{' (a kmeans background averages ids: give token rows)' if self.background.source == 'kmeans' else ''}"
                )

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[Optional[np.ndarray]]:
        space = self.space
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
        ends = space.points(inputs)
        deltas, points = [], []
        for i, (end, data) in enumerate(zip(ends, self.background.data)):
            if end is None:
                deltas.append(None)
                points.append(None)
                continue
            if space.is_text(i):
                # The background's tokens at the Embedding's output; at the probe's padding positions the probe's
                # own, so padding moves nowhere (and gets 0) while the masks follow the probe's ids.
                reference = space.model.embeddings(space.calls[i], self.background.data)
                base = reference[chosen].reshape((m, s) + end.shape[1:])
                base = np.where(space.padding(inputs, i)[:, None, :, None], end[:, None], base)
            else:
                base = data[chosen].reshape((m, s) + end.shape[1:])
            delta = end[:, None] - base
            deltas.append(delta)
            points.append((base + alpha.reshape((m, s) + (1,) * (end.ndim - 1)) * delta).reshape((m * s,) + end.shape[1:]))
        rows = [np.repeat(x, s, axis=0) for x in inputs] if space.has_text else inputs
        _, grads = space.gradients(rows, points, np.repeat(target, s))
        out = [None if g is None else (g.reshape(delta.shape) * delta).mean(axis=1) for g, delta in zip(grads, deltas)]
        return space.reduce(out, inputs, how="sum")
