"""KernelSHAP (Lundberg & Lee, 2017, arXiv:1705.07874): LIME's local linear surrogate with the Shapley kernel."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np

from tb_xai.methods.coalitions import determining_budget, probe_generator, shapley_budget, shapley_coalitions
from tb_xai.methods.surrogate import LocalSurrogate, segment_groups, weighted_least_squares
from tb_xai.methods.reference_engines import ShapKernelEngine


logger = logging.getLogger(__name__)

#: The most times "auto" doubles its first budget for a probe whose standard error is over the tolerance.
_AUTO_DOUBLINGS = 2
#: Mask elements (probes x background rows x coalitions x features) held at once.
_ELEMENTS_PER_CHUNK = 2 ** 23


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
        errors = self.standard_errors()
        return {"standard_error_max": float(np.max(errors)), "standard_error_mean": float(np.mean(errors)),
                "samples_mean": float(np.mean(np.concatenate(self._budgets)))}

    def standard_errors(self) -> np.ndarray:
        """At the last `attribute` call: each probe's estimated standard error (the root of its attributions'
        summed sampling variances) relative to the norm of its attributions, probes in order (each input of
        a multi-input model in turn)."""
        return np.concatenate(self._errors) if self._errors else np.zeros(0)

    def attribute(self, inputs, target):
        self._errors, self._budgets = [], []
        return super().attribute(inputs, target)

    def _explain_tabular(self, x, target, index):
        return self._auto(x, np.full(len(x), x.shape[1]), target, index, None)

    def _explain_superpixels(self, x, segments, target, index):
        counts = np.array([int(s.max()) + 1 for s in segments])
        return self._auto(x, counts, target, index, segments)

    def _auto(self, x, counts, target, index, segments) -> np.ndarray:
        """Shapley values at the first budget; with "auto", for the probes whose standard error is over the
        tolerance, again with new draws at twice and four times the budget, each probe's estimates combined
        by their inverse estimated variances."""
        def run(rows, scale):
            groups = None if segments is None else segment_groups(x[rows], segments[rows])
            return self._shapley(x[rows], list(counts[rows]), target[rows], index[rows], groups,
                                 None if segments is None else segments[rows], rows, scale)

        phi, variance = run(np.arange(len(x)), 1)
        budgets = np.array([self._budget(int(k), 1) for k in counts], dtype=np.float64)
        if self.samples == "auto":
            for doubling in range(1, _AUTO_DOUBLINGS + 1):
                over = np.flatnonzero(_relative(variance, phi) > self.tolerance)
                if over.size == 0:
                    break
                again, again_variance = run(over, 1 << doubling)
                budgets[over] += [self._budget(int(k), 1 << doubling) for k in counts[over]]
                k = again.shape[1]
                v1, v2 = variance[over], again_variance
                total = np.maximum(v1 + v2, np.finfo(np.float64).tiny)
                phi[over, :k] = (phi[over, :k] * v2[:, None] + again * v1[:, None]) / total[:, None]
                variance[over] = v1 * v2 / total
        self._errors.append(_relative(variance, phi))
        self._budgets.append(budgets)
        return phi.astype(np.float32)

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

    def _shapley(self, x, counts: List[int], target, index, groups, segments, probes, scale: int = 1):
        """(attributions (P, K_max) float64, estimated variances of their sums of squares (P,)) at the
        budget times `scale`; `probes` are the positions of `x` in the current block."""
        self._warn_small_budget(counts)
        replacement, row_weights = self.replacements(x, segments)
        b = replacement.shape[1]
        row_weights = np.asarray(row_weights, dtype=np.float64) / np.sum(row_weights)
        generator_keys = () if scale == 1 else (scale,)
        designs = [shapley_coalitions(k, self._budget(k, scale), probe_generator(self.seed, i, *generator_keys),
                                      rows=b) for k, i in zip(counts, index)]
        p, k_max = len(x), max(counts)
        full = self.coalition_values(x, np.ones((p, 1, k_max), dtype=bool), np.ones((p, 1), dtype=bool), groups,
                                     replacement[:, :1], np.ones(1), target, probes=probes)[:, 0]
        phi = np.zeros((p, k_max))
        variance = np.zeros(p)
        s_max = max(len(d.weights) for d in designs)
        # One regression per (probe, background row): the probe's values against that row alone. Chunks of
        # them bound the host memory of masks and designs.
        per_chunk = max(1, _ELEMENTS_PER_CHUNK // max(1, b * (s_max + 1) * k_max))
        for start in range(0, p, per_chunk):
            c = np.arange(start, min(p, start + per_chunk))
            v = len(c) * b
            masks = np.zeros((v, s_max + 1, k_max), dtype=bool)  # the coalitions, then the empty one
            valid = np.zeros((v, s_max + 1), dtype=bool)
            weights = np.zeros((v, s_max))
            for j, i in enumerate(c):
                d, k = designs[i], counts[i]
                masks[j * b:(j + 1) * b, :len(d.weights), :k] = d.masks
                valid[j * b:(j + 1) * b, :len(d.weights)] = True
                weights[j * b:(j + 1) * b, :len(d.weights)] = d.weights
            valid[:, s_max] = True
            rows = np.repeat(c, b)
            if replacement.shape[0] == 1:
                fill = np.broadcast_to(replacement[0][None], (len(c),) + replacement.shape[1:])
            else:
                fill = replacement[c]
            fill = fill.reshape((v, 1) + replacement.shape[2:])
            values = self.coalition_values(x[rows], masks, valid, None if groups is None else groups[rows], fill,
                                           np.ones(1), target[rows], probes=probes[rows])
            empty = values[:, s_max]
            features = np.arange(k_max)[None, :] < np.asarray(counts)[rows][:, None]
            design = masks[:, :s_max].astype(np.float64)
            y = values[:, :s_max] - empty[:, None]
            estimate = weighted_least_squares(design, y, weights, features, intercept=False,
                                              total=full[rows] - empty)[0]
            row_variance = _sampling_variance(design, y, weights, features, estimate, [designs[i] for i in c], b)
            w = np.tile(row_weights, len(c))
            phi[c] = (w[:, None] * estimate).reshape(len(c), b, k_max).sum(axis=1)
            variance[c] = (w ** 2 * row_variance).reshape(len(c), b).sum(axis=1)
        return phi, variance


def _relative(variance: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Estimated standard error of each probe's attributions (the root of the summed variances) over their
    norm."""
    return np.sqrt(variance) / np.maximum(np.linalg.norm(phi, axis=1), np.finfo(np.float32).tiny)


def _sampling_variance(design, y, weights, features, estimate, designs, rows: int) -> np.ndarray:
    """The sampling variance of each regression's estimate, summed over its features: (V,).

    Linearized (the sandwich estimate): the estimate's error is Q sum_j u_j, where Q is the feature block of
    the inverse of the constrained regression's KKT matrix and u_j = w (a r + a' r') the weighted residuals of
    sampled complement pair j (listed coalitions carry no sampling error). Pairs are drawn without
    replacement within their size class, so the variance of their sum is, per class, n (1 - n/N) times
    the spread of its pairs' u, with the degrees of freedom the fit took from the residuals given back.
    """
    v, s, k = design.shape
    residual = y - np.einsum("vsk,vk->vs", design, estimate)
    weighted = design * (weights * residual)[:, :, None]  # w a r per coalition
    gram = np.einsum("vsk,vs,vsl->vkl", design, weights, design)
    kkt = np.zeros((v, k + 1, k + 1))
    kkt[:, :k, :k] = gram + np.eye(k) * (~features)[:, None, :]
    kkt[:, :k, k] = features
    kkt[:, k, :k] = features
    q = np.linalg.pinv(kkt, rcond=1e-10, hermitian=True)[:, :k, :k] * features[:, None, :] * features[:, :, None]
    out = np.zeros(v)
    for j, d in enumerate(designs):
        if d.pairs == 0:
            continue
        part = slice(j * rows, (j + 1) * rows)
        n, first = d.pairs, d.listed
        u = weighted[part, first:first + n] + weighted[part, first + n:first + 2 * n]  # (rows, n, K)
        spread = np.zeros(u.shape)
        factor = np.zeros(n)
        for size, share in d.class_share.items():
            members = d.pair_class == size
            count = int(members.sum())
            centred = u[:, members] - (u[:, members].mean(axis=1, keepdims=True) if count > 1 else 0)
            spread[:, members] = centred
            factor[members] = (1 - share) * (count / (count - 1) if count > 1 else 1)
        z = np.einsum("rkl,rnl->rnk", q[part], spread)
        dof = n / max(n - (int(features[part][0].sum()) - 1), 1)
        out[part] = dof * np.einsum("n,rnk->r", factor, z ** 2)
    return out
