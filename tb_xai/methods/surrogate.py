"""Local surrogate models: what LIME and KernelSHAP share.

Both explain a probe by switching interpretable features (tabular features or image superpixels) on and off,
evaluating the model on the perturbed inputs, and fitting a weighted linear model to the outputs. They differ
in how they sample perturbations and weigh them (LIME: a distance kernel; KernelSHAP: the Shapley kernel with
an efficiency constraint). This module holds the shared parts: the interpretable features of each probe, the
batched evaluation of perturbations through the model's compiled predict, and one batched weighted
least-squares solve for all probes of a block.
"""

from __future__ import annotations

import abc
import concurrent.futures
import numbers
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from tb_xai.metadata import IMAGE, TABULAR
from tb_xai.methods.background import Background, BackgroundLike, as_background
from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.methods.batching import chunks, map_batches
from tb_xai.methods.coalitions import probe_keys
from tb_xai.methods.segmentation import Segmentation, as_segmentation, segment_means

#: Input elements (float32) per model call when no batch_size is given: about 8 MB, large enough for the
#: compiled predict to reach its throughput on small models and small enough to bound memory on large ones.
_ELEMENTS_PER_CALL = 2 ** 21
#: Host elements (masks, sampled rows) held for one block of probes.
_ELEMENTS_PER_BLOCK = 2 ** 24
_SUPERPIXELS_PER_IMAGE = 256
_ENGINES = ("batched", "reference")


def normal_equations(design: np.ndarray, weights: np.ndarray, ridge: float):
    """The weighted moments a least-squares fit needs that do not depend on the outputs.

    Args:
        design: (P, S, K) interpretable features of each sample; float32 keeps the big product in float32.
        weights: (P, S) sample weights; zero for padding samples.
        ridge: the L2 penalty the moments will be solved with (without one, weights are scaled to sum 1:
            the solution ignores their scale and the KKT system is better conditioned).

    Returns:
        (weighted design (P, S, K), the weights used (P, S), gram (P, K, K), weighted feature sums (P, K),
        weight sums (P,)).
    """
    dtype = np.float32 if design.dtype == np.float32 else np.float64
    design = np.asarray(design, dtype=dtype)
    w = np.asarray(weights, dtype=np.float64)
    total_weight = np.maximum(w.sum(axis=1), np.finfo(np.float64).tiny)
    if ridge == 0:
        w = w / total_weight[:, None]
        total_weight = np.ones(len(w))
    weighted = design * w[:, :, None].astype(dtype)
    gram = np.matmul(np.swapaxes(weighted, 1, 2), design).astype(np.float64)
    return weighted, w, gram, weighted.sum(axis=1, dtype=np.float64), total_weight


def solve_normal_equations(
    gram: np.ndarray,
    x_sum: np.ndarray,
    total_weight: np.ndarray,
    xy: np.ndarray,
    y_sum: np.ndarray,
    valid: np.ndarray,
    ridge: float = 0.0,
    intercept: bool = True,
    total: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Solves the weighted least-squares problems given their moments, all probes in one batched call.

    `xy` and `y_sum` are sum_s w_s z_s y_s and sum_s w_s y_s with the weights `normal_equations` returned.
    See `weighted_least_squares` for the problem. Returns (coefficients (P, K), intercepts (P,)).
    """
    k = gram.shape[1]
    rhs = np.asarray(xy, dtype=np.float64)
    if intercept:  # centring on the weighted means, done on the moments instead of copying the design
        x_mean = x_sum / total_weight[:, None]
        y_mean = y_sum / total_weight
        gram = gram - total_weight[:, None, None] * x_mean[:, :, None] * x_mean[:, None, :]
        rhs = rhs - total_weight[:, None] * x_mean * y_mean[:, None]
    gram = gram + np.eye(k) * ridge + np.eye(k) * (~valid)[:, None, :]
    rhs = rhs * valid
    if total is not None:
        c = valid.astype(np.float64)
        kkt = np.zeros((len(gram), k + 1, k + 1))
        kkt[:, :k, :k] = gram
        kkt[:, :k, k] = c
        kkt[:, k, :k] = c
        rhs = np.concatenate([rhs, np.asarray(total, dtype=np.float64)[:, None]], axis=1)
        gram = kkt
    solution = _well_posed_solve(gram, rhs)
    beta = solution[:, :k] * valid
    b = (y_mean - (x_mean * beta).sum(axis=1)) if intercept else np.zeros(len(gram))
    return beta, b


def _well_posed_solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solves each (n, n) system of `matrix` for `rhs`; a singular or ill-conditioned one (too few samples
    for its features) gets the minimum-norm least-squares solution instead of an arbitrary one.

    np.linalg.solve raises only on an exactly singular matrix; a nearly singular one (rank-deficient
    samples plus rounding) returns a finite, meaningless answer, so the conditioning is checked.
    """
    solution = np.empty(rhs.shape)
    try:
        solution[:] = np.linalg.solve(matrix, rhs[..., None])[..., 0]
        # The residual relative to the scales involved reveals a solve that rounding made meaningless.
        residual = np.abs(np.matmul(matrix, solution[..., None])[..., 0] - rhs).max(axis=1)
        scale = np.abs(matrix).max(axis=(1, 2)) * np.abs(solution).max(axis=1) + np.abs(rhs).max(axis=1)
        suspect = ~(residual <= 1e-8 * np.maximum(scale, np.finfo(np.float64).tiny))
        suspect |= np.linalg.cond(matrix) > 1e10 if matrix.shape[-1] <= 64 else False
    except np.linalg.LinAlgError:
        suspect = np.ones(len(matrix), dtype=bool)
    if suspect.any():
        pinv = np.linalg.pinv(matrix[suspect], rcond=1e-10, hermitian=True)
        solution[suspect] = np.matmul(pinv, rhs[suspect][..., None])[..., 0]
    return solution


def weighted_least_squares(
    design: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    valid: np.ndarray,
    ridge: float = 0.0,
    intercept: bool = True,
    total: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Solves one weighted (ridge) least-squares problem per probe, all probes in one batched call.

    Minimizes sum_s w_s (y_s - b - z_s . beta)^2 + ridge |beta|^2 for each probe, with the intercept b
    unpenalized (as scikit-learn's Ridge with sample weights), or without intercept and subject to
    sum(beta) == total when `total` is given (KernelSHAP's efficiency constraint, solved through its KKT
    system).

    Args:
        design: (P, S, K) interpretable features of each sample.
        y: (P, S) model outputs.
        weights: (P, S) sample weights; zero for padding samples.
        valid: (P, K) which features exist for each probe (images have different superpixel counts);
            coefficients of the others are 0.
        ridge: L2 penalty.
        intercept: fit an intercept.
        total: (P,) the sum the coefficients must have, or None.

    Returns:
        (coefficients (P, K), intercepts (P,)).
    """
    design = np.asarray(design)
    if design.dtype == bool:
        design = design.astype(np.float64)
    weighted, w, gram, x_sum, total_weight = normal_equations(design, weights, ridge)
    xy = np.matmul(np.swapaxes(weighted, 1, 2), np.asarray(y, dtype=weighted.dtype)[..., None])[..., 0]
    y_sum = (w * y).sum(axis=1)
    return solve_normal_equations(gram, x_sum, total_weight, xy, y_sum, valid, ridge, intercept, total)


class LocalSurrogate(AttributionMethod):
    """Base of the local-surrogate methods (LIME, KernelSHAP) on one tabular or image input.

    Tabular probes (probes, features) have one interpretable feature per column and one attribution per
    column. Image probes (probes, H, W, C) have one per superpixel; the attribution is an (H, W) map holding
    each pixel's superpixel coefficient. Subclasses sample the perturbations and choose the regression.

    Args:
        samples: perturbations per probe.
        background: what replaces a removed feature. Tabular: a `Background` ("probe", an array, k-means).
            Images: "segment_mean" (each superpixel's mean colour), a number (a constant fill), or a
            `Background` of images.
        segmentation: superpixels of image probes: "slic", "quickshift", "grid" or a `Segmentation`.
        engine: "batched" (ours: all probes through the compiled model in large batches, one batched solve)
            or "reference" (the shap / lime library, with the compiled batched predict as model function).
        seed: seed of the perturbations; a probe's draws depend only on the seed and its values.
        batch_size: model rows per call; by default about 8 MB of input per call (and at least the
            adapter's batch size).
        name: the logged name.
    """

    requires_gradients = False
    modalities = (TABULAR, IMAGE)

    def __init__(
        self,
        samples,
        background: Optional[Union[BackgroundLike, float]] = None,
        segmentation: Optional[Union[str, Segmentation]] = None,
        engine: str = "batched",
        seed: int = 0,
        batch_size: Optional[int] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name)
        if engine not in _ENGINES:
            raise ValueError(f"engine must be one of {_ENGINES}; received: {engine!r}")
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", alternative="None")
        self.samples = samples
        self.background_spec = background
        self.segmentation = as_segmentation(segmentation)
        self.engine = engine
        self.seed = int(seed)
        self.batch_size = batch_size
        self.modality = ""
        self.background: Optional[Background] = None
        self.fill: Optional[Union[str, float]] = None

    # ------------------------------------------------------------------------------------- configuration
    def config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"samples": self.samples, "engine": self.engine, "seed": self.seed}
        if self.background is not None:
            config.update(self.background.config())
        elif self.fill is not None:
            config["background"] = self.fill if isinstance(self.fill, str) else "constant"
            if not isinstance(self.fill, str):
                config["background_value"] = float(self.fill)
        if self.modality == IMAGE:
            config.update(self.segmentation.config())
        return config

    def attribution_shape(self, input_shape):
        return tuple(input_shape[:2]) if len(input_shape) == 3 else tuple(input_shape)

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        if len(probe.inputs) != 1:
            raise ValueError(
                f"{self.name} explains a single-input model; the probe has {len(probe.inputs)} inputs {probe.names}"
            )
        self.modality = probe.modality(0)
        if self.modality not in (TABULAR, IMAGE):
            raise ValueError(
                f"{self.name} explains tabular (probes, features) or image (probes, H, W, C) inputs; probe "
                f"input {probe.names[0]!r} has shape {probe.inputs[0].shape}"
            )
        spec = self.background_spec
        if spec is None:
            spec = "probe" if self.modality == TABULAR else "segment_mean"
        self.background, self.fill = None, None
        is_fill = (isinstance(spec, str) and spec == "segment_mean") or _is_number(spec)
        if self.modality == IMAGE and is_fill:
            self.fill = spec if isinstance(spec, str) else float(spec)
        elif is_fill:
            raise ValueError(
                f"{self.name}: background {spec!r} fills image superpixels; for tabular input "
                f"{probe.names[0]!r} use 'probe', an array of rows or a Background"
            )
        else:
            self.background = as_background(spec).bind(probe, self.name)
        self._check(probe)

    def _check(self, probe) -> None:
        """Method-specific validation at setup."""

    @abc.abstractmethod
    def samples_per_probe(self, features: int) -> int:
        """Perturbations evaluated for a probe with `features` interpretable features."""

    def rows_per_call(self, row_elements: int) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return max(self.model.batch_size, _ELEMENTS_PER_CALL // max(1, row_elements))

    # ------------------------------------------------------------------------------------------- driving
    def attribute(self, inputs, target) -> List[np.ndarray]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        x = np.asarray(inputs[0])
        # Host memory per probe: its samples times its interpretable features (tabular columns, or a
        # generous count of superpixels).
        width = x.shape[1] if self.modality == TABULAR else _SUPERPIXELS_PER_IMAGE
        block = max(1, _ELEMENTS_PER_BLOCK // (self.samples_per_probe(width) * width))
        arrays = [x, np.asarray(target, dtype=np.int64), probe_keys(x)]
        return map_batches(lambda *a: [self._explain(*a)], arrays, block)

    def _attribute(self, inputs, target) -> List[np.ndarray]:
        raise NotImplementedError("attribute() blocks probes by host memory and calls _explain directly")

    def _explain(self, x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        if self.engine == "reference":
            from tb_xai.methods import reference_engines

            return reference_engines.explain(self, x, target, index)
        if self.modality == TABULAR:
            return self._explain_tabular(x, target, index)
        segments = np.stack([self.segmentation(image) for image in x])
        coefficients = self._explain_superpixels(x, segments, target, index)
        return np.take_along_axis(coefficients, segments.reshape(len(x), -1), axis=1).reshape(segments.shape)

    @abc.abstractmethod
    def _explain_tabular(self, x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(P, features) attributions of tabular probes."""

    @abc.abstractmethod
    def _explain_superpixels(self, x, segments, target, index) -> np.ndarray:
        """(P, K_max) coefficients of each probe's superpixels (0 beyond a probe's own count)."""

    # ------------------------------------------------------------------------------- model evaluation
    def replacements(self, x: np.ndarray, segments: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """What removed features take: (1 or P, B, *features) rows and their (B,) weights."""
        if self.background is not None:
            return self.background.data[None], self.background.weights
        if self.fill == "segment_mean":
            return np.stack([segment_means(image, s) for image, s in zip(x, segments)])[:, None], np.ones(1)
        return np.full((1, 1) + x.shape[1:], self.fill, dtype=np.float32), np.ones(1)

    def coalition_values(
        self,
        x: np.ndarray,
        masks: np.ndarray,
        valid: np.ndarray,
        groups: Optional[np.ndarray],
        replacement: np.ndarray,
        replacement_weights: np.ndarray,
        target: np.ndarray,
    ) -> np.ndarray:
        """The model's `target` output with each coalition's features kept, averaged over replacement rows.

        Args:
            x: (P, *features) probes.
            masks: (P, S, K) coalitions over interpretable features.
            valid: (P, S) which coalitions exist (the rest are padding and are not evaluated).
            groups: (P, D) interpretable feature of each flattened input element, or None when features
                are the input's own columns.
            replacement: (1 or P, B, *features) rows removed features take from.
            replacement_weights: (B,) weights of those rows.
            target: (P,) explained class of each probe.

        Returns:
            (P, S) values; 0 where not valid.
        """
        p_count, s_count = masks.shape[:2]
        shape = x.shape[1:]
        flat_x = x.reshape(p_count, -1).astype(np.float32)
        flat_r = replacement.reshape(replacement.shape[:2] + (-1,)).astype(np.float32)
        rows_b = flat_r.shape[1]
        probe_of, sample_of = np.nonzero(valid)
        values = np.zeros((p_count, s_count))
        pairs_per_call = min(len(probe_of), max(1, self.rows_per_call(flat_x.shape[1]) // rows_b))
        pieces = list(chunks(len(probe_of), pairs_per_call))
        buffers = [np.empty((pairs_per_call, rows_b, flat_x.shape[1]), dtype=np.float32) for _ in range(2)]

        def perturbed(j: int):
            p = probe_of[pieces[j]]
            keep = masks[p, sample_of[pieces[j]]]
            if groups is not None:
                keep = np.take_along_axis(keep, groups[p], axis=1)
            rows = buffers[j % 2][:len(p)]
            np.copyto(rows, flat_r[p] if len(flat_r) > 1 else flat_r)
            np.copyto(rows, flat_x[p][:, None, :], where=keep[:, None, :])
            return rows

        def evaluate(j: int, rows: np.ndarray) -> None:
            p = probe_of[pieces[j]]
            out = self.predict_rows(rows.reshape((-1,) + shape), np.repeat(target[p], rows_b))
            values[p, sample_of[pieces[j]]] = out.reshape(-1, rows_b) @ replacement_weights

        pipelined(perturbed, evaluate, len(pieces))
        return values

    def predict_rows(self, rows: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The `target` output of each row, through the compiled predict in calls of `rows_per_call` rows."""
        size = self.rows_per_call(int(np.prod(rows.shape[1:])))
        out = np.empty(len(rows), dtype=np.float64)
        for piece in chunks(len(rows), size):
            predicted = self.model.predict([rows[piece]], batch_size=size)
            out[piece] = predicted[np.arange(len(predicted)), target[piece]]
        return out


def pipelined(build, evaluate, count: int) -> None:
    """Calls `evaluate(j, build(j))` for j < count, building j + 1 on a second thread while j is evaluated.

    Perturbed inputs are built by numpy while the model runs in TensorFlow; both release the GIL, so the
    host work overlaps the model's and costs little of its throughput. `build(j + 2)` starts only after
    `evaluate(j)` returns, so two alternating buffers suffice.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build, 0)
        for j in range(count):
            built = pending.result()
            if j + 1 < count:
                pending = pool.submit(build, j + 1)
            evaluate(j, built)


def padded(arrays: List[np.ndarray], shape: Tuple[int, ...], value=0) -> np.ndarray:
    """Stacks arrays of different leading sizes into one `shape` array, padding with `value`."""
    out = np.full((len(arrays),) + shape, value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


def segment_groups(x: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(P, H*W*C) superpixel of each flattened element of (P, H, W, C) images."""
    return np.broadcast_to(segments[..., None], x.shape).reshape(len(x), -1)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
