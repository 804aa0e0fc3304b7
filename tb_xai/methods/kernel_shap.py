"""KernelSHAP (Lundberg & Lee, 2017, arXiv:1705.07874): LIME's local linear surrogate with the Shapley kernel."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np

from tb_xai.methods.coalitions import determining_budget, probe_generator, shapley_budget, shapley_coalitions
from tb_xai.methods.surrogate import LocalSurrogate, segment_groups, weighted_least_squares
from tb_xai.methods.reference_engines import ShapKernelEngine


logger = logging.getLogger(__name__)

#: Groups the sampled pairs are split into to estimate the standard error (Covert & Lee's approach of
#: estimating the estimator's variance from the samples themselves, here by the spread of group estimates).
_SE_GROUPS = 4
#: The most times "auto" doubles its first budget for a probe whose standard error is over the tolerance.
_AUTO_DOUBLINGS = 2


class KernelShap(LocalSurrogate):
    """Shapley values of interpretable features, estimated by a Shapley-kernel weighted regression.

    The value of a coalition is the model's explained output with the coalition's features taken from the
    probe and the others from each background row, averaged over the background (weighted). The regression
    is constrained to efficiency: each probe's attributions sum to f(probe) - E[f(background)] exactly.
    With `samples` >= 2^K - 2 every coalition is listed and the result is the exact Shapley values.

    Cost: (coalitions + 2) x background rows model evaluations per probe (2088 coalitions x 50 rows = 104k
    rows for 20 features), all forward passes.

    The standard error of each probe's attributions is estimated from the spread of estimates over four
    disjoint groups of the sampled pairs (no extra model calls); its largest value relative to the norm of
    the attributions is in `diagnostics()`, logged every step.

    Args:
        samples: coalitions per probe, or "auto": 2K + 2048 (shap's default) first, then, for each probe
            whose estimated relative standard error is over `tolerance`, twice as many, up to 4x.
        tolerance: the relative standard error "auto" stops at (a number in (0, 1)); 0.05 = 5% of the
            norm of the probe's attributions.
        background, segmentation, engine, seed, batch_size, name: see `LocalSurrogate`. The reference
            engine calls `shap.KernelExplainer` with `l1_reg=False` (no feature selection, as ours).

    Example:
        >>> KernelShap(samples=1024, background=Background.kmeans(x_train, k=20))
    """

    name = "kernel_shap"
    reference_engine = ShapKernelEngine

    def __init__(self, samples="auto", background=None, segmentation=None, engine: str = "batched",
                 seed: int = 0, batch_size: Optional[int] = None, name: Optional[str] = None,
                 tolerance: float = 0.05):
        super().__init__(samples, background, segmentation, engine, seed, batch_size, name)
        shapley_budget(2, samples)  # validates `samples`
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be a number in (0, 1) (0.05 = 5%); received: {tolerance!r}")
        self.tolerance = float(tolerance)
        self._warned_budget = False
        self._errors: List[np.ndarray] = []
        self._budgets: List[np.ndarray] = []

    def config(self):
        config = super().config()
        if self.samples == "auto":
            config["tolerance"] = self.tolerance
        return config

    def samples_per_probe(self, features: int) -> int:
        return self._budget(features, 1 << _AUTO_DOUBLINGS if self.samples == "auto" else 1) + 2

    def _budget(self, features: int, scale: int) -> int:
        if self.samples == "auto":
            return shapley_budget(features, (2 * features + 2048) * scale)
        return shapley_budget(features, self.samples)

    def diagnostics(self) -> Dict[str, float]:
        """At the last `attribute` call: the largest estimated standard error relative to the norm of a
        probe's attributions, and the mean coalitions per probe."""
        if not self._errors:
            return {}
        return {"standard_error_max": float(np.max(np.concatenate(self._errors))),
                "samples_mean": float(np.mean(np.concatenate(self._budgets)))}

    def attribute(self, inputs, target):
        self._errors, self._budgets = [], []
        return super().attribute(inputs, target)

    def _explain_tabular(self, x, target, index):
        return self._auto(x, np.full(len(x), x.shape[1]), target, index, None)

    def _explain_superpixels(self, x, segments, target, index):
        counts = np.array([int(s.max()) + 1 for s in segments])
        return self._auto(x, counts, target, index, segments)

    def _auto(self, x, counts, target, index, segments) -> np.ndarray:
        """Shapley values at the first budget; with "auto", again at twice the budget for the probes whose
        standard error is over the tolerance, keeping the answer with the lower one."""
        def run(rows, scale):
            groups = None if segments is None else segment_groups(x[rows], segments[rows])
            return self._shapley(x[rows], list(counts[rows]), target[rows], index[rows], groups,
                                 None if segments is None else segments[rows], scale)

        phi, error = run(np.arange(len(x)), 1)
        budgets = np.array([self._budget(int(k), 1) for k in counts], dtype=np.float64)
        if self.samples == "auto":
            for doubling in range(1, _AUTO_DOUBLINGS + 1):
                over = np.flatnonzero(error > self.tolerance)
                if over.size == 0:
                    break
                again, again_error = run(over, 1 << doubling)
                budgets[over] += [self._budget(int(k), 1 << doubling) for k in counts[over]]
                better = again_error < error[over]
                phi[over[better], :again.shape[1]] = again[better]
                phi[over[better], again.shape[1]:] = 0
                error[over[better]] = again_error[better]
        self._errors.append(error)
        self._budgets.append(budgets)
        return phi

    def _warn_small_budget(self, counts: List[int]) -> None:
        k = max(counts)
        budget = shapley_budget(k, self.samples)
        if not self._warned_budget and budget < min(determining_budget(k), 2 ** min(k, 62) - 2):
            self._warned_budget = True
            logger.warning(
                "tb_xai: %s: samples=%s coalitions cannot determine %d features (%d are needed: each "
                "complement pair adds one equation); the attributions are the minimum-norm solution and may be "
                "far from the Shapley values. Use samples >= %d.",
                self.name, self.samples, k, determining_budget(k), determining_budget(k))

    def _shapley(self, x, counts: List[int], target, index, groups, segments, scale: int = 1):
        """(attributions (P, K_max), relative standard errors (P,)) at the budget times `scale`."""
        self._warn_small_budget(counts)
        drawn = [shapley_coalitions(k, self._budget(k, scale), probe_generator(self.seed, i, *(() if scale == 1 else (scale,))),
                                    return_pairs=True) for k, i in zip(counts, index)]
        p, k_max = len(x), max(counts)
        s_max = max(len(m) for m, _, _ in drawn)
        # Per probe: its coalitions, padding, then the empty and the full coalition (for the constraint).
        masks = np.zeros((p, s_max + 2, k_max), dtype=bool)
        weights = np.zeros((p, s_max))
        valid = np.zeros((p, s_max + 2), dtype=bool)
        group = np.full((p, s_max), -1)
        for row, ((m, w, pair), k) in enumerate(zip(drawn, counts)):
            group[row, :len(pair)] = np.where(pair >= 0, pair % _SE_GROUPS, -1)
            masks[row, :len(m), :k] = m
            masks[row, s_max + 1, :k] = True
            weights[row, :len(w)] = w
            valid[row, :len(m)] = True
        valid[:, s_max:] = True
        replacement, replacement_weights = self.replacements(x, segments)
        values = self.coalition_values(x, masks, valid, groups, replacement, replacement_weights, target)
        empty, full = values[:, s_max], values[:, s_max + 1]
        features = np.arange(k_max)[None, :] < np.asarray(counts)[:, None]

        def solve(w):
            return weighted_least_squares(masks[:, :s_max], values[:, :s_max] - empty[:, None], w, features,
                                          intercept=False, total=full - empty)[0]

        phi = solve(weights)
        # Each group's estimate: the listed coalitions and that group's pairs, weighted up to the full mass.
        estimates = np.stack([solve(np.where(group == g, weights * _SE_GROUPS, np.where(group < 0, weights, 0)))
                              for g in range(_SE_GROUPS)])
        standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(_SE_GROUPS)
        if not np.any(group >= 0):  # every coalition listed: exact
            standard_error = np.zeros_like(phi)
        norm = np.linalg.norm(phi, axis=1)
        relative = np.linalg.norm(standard_error, axis=1) / np.maximum(norm, np.finfo(np.float32).tiny)
        return phi.astype(np.float32), relative
