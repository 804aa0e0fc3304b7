"""KernelSHAP (Lundberg & Lee, 2017, arXiv:1705.07874): LIME's local linear surrogate with the Shapley kernel."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from tb_xai.methods.coalitions import probe_generator, shapley_budget, shapley_coalitions
from tb_xai.methods.surrogate import LocalSurrogate, segment_groups, weighted_least_squares
from tb_xai.methods.reference_engines import ShapKernelEngine


class KernelShap(LocalSurrogate):
    """Shapley values of interpretable features, estimated by a Shapley-kernel weighted regression.

    The value of a coalition is the model's explained output with the coalition's features taken from the
    probe and the others from each background row, averaged over the background (weighted). The regression
    is constrained to efficiency: each probe's attributions sum to f(probe) - E[f(background)] exactly.
    With `samples` >= 2^K - 2 every coalition is listed and the result is the exact Shapley values.

    Cost: (coalitions + 2) x background rows model evaluations per probe (2088 coalitions x 50 rows = 104k
    rows for 20 features), all forward passes.

    Args:
        samples: coalitions per probe; "auto" is 2K + 2048 (shap's default).
        background, segmentation, engine, seed, batch_size, name: see `LocalSurrogate`. The reference
            engine calls `shap.KernelExplainer` with `l1_reg=False` (no feature selection, as ours).

    Example:
        >>> KernelShap(samples=1024, background=Background.kmeans(x_train, k=20))
    """

    name = "kernel_shap"
    reference_engine = ShapKernelEngine

    def __init__(self, samples="auto", background=None, segmentation=None, engine: str = "batched",
                 seed: int = 0, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(samples, background, segmentation, engine, seed, batch_size, name)
        shapley_budget(2, samples)  # validates `samples`

    def samples_per_probe(self, features: int) -> int:
        return shapley_budget(features, self.samples) + 2

    def _explain_tabular(self, x, target, index):
        features = x.shape[1]
        return self._shapley(x, [features] * len(x), target, index, groups=None, segments=None)

    def _explain_superpixels(self, x, segments, target, index):
        counts = [int(s.max()) + 1 for s in segments]
        return self._shapley(x, counts, target, index, groups=segment_groups(x, segments), segments=segments)

    def _shapley(self, x, counts: List[int], target, index, groups, segments) -> np.ndarray:
        drawn = [shapley_coalitions(k, self.samples, probe_generator(self.seed, i)) for k, i in zip(counts, index)]
        p, k_max = len(x), max(counts)
        s_max = max(len(m) for m, _ in drawn)
        # Per probe: its coalitions, padding, then the empty and the full coalition (for the constraint).
        masks = np.zeros((p, s_max + 2, k_max), dtype=bool)
        weights = np.zeros((p, s_max))
        valid = np.zeros((p, s_max + 2), dtype=bool)
        for row, ((m, w), k) in enumerate(zip(drawn, counts)):
            masks[row, :len(m), :k] = m
            masks[row, s_max + 1, :k] = True
            weights[row, :len(w)] = w
            valid[row, :len(m)] = True
        valid[:, s_max:] = True
        replacement, replacement_weights = self.replacements(x, segments)
        values = self.coalition_values(x, masks, valid, groups, replacement, replacement_weights, target)
        empty, full = values[:, s_max], values[:, s_max + 1]
        features = np.arange(k_max)[None, :] < np.asarray(counts)[:, None]
        phi, _ = weighted_least_squares(
            masks[:, :s_max], values[:, :s_max] - empty[:, None], weights, features,
            intercept=False, total=full - empty,
        )
        return phi.astype(np.float32)
