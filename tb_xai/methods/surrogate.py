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
import contextlib
import dataclasses
import functools
import numbers
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE, TABULAR, TEXT
from tb_xai.methods.background import Background, BackgroundLike, as_background
from tb_xai.methods.base import AttributionMethod, check_positive_int, perturbation_map_shape
from tb_xai.batching import chunks, fastest_call_size, map_batches
from tb_xai.methods.coalitions import joint_probe_keys
from tb_xai.methods.segmentation import (  # segment_groups is re-exported for the methods
    Segmentation, as_segmentation, features_to_map, segment_groups, segment_means,
)
from tb_xai import text as text_lib
from tb_xai.probe import ProbeSet

#: Input elements (float32) per model call when no batch_size is given: about 8 MB, large enough for the
#: compiled predict to reach its throughput on small models and small enough to bound memory on large ones.
_ELEMENTS_PER_CALL = 2 ** 21
#: Elements of the widest layer output one model call may hold (256 MB of float32): what bounds the rows of a
#: call when the input is small and a layer wide.
_ACTIVATIONS_PER_CALL = 2 ** 26
#: A call whose rows would fill at least this many model calls of the largest size first measures which call size
#: is fastest (`LocalSurrogate._measure_call_sizes`; the measurement costs about 5 of those calls, once per model).
_MEASURED_CALLS = 8
#: Host elements (masks, sampled rows) held for one block of probes.
_ELEMENTS_PER_BLOCK = 2 ** 24
_SUPERPIXELS_PER_IMAGE = 256
_ENGINES = ("batched", "reference")
#: What hidden superpixels or windows can take besides a number or background rows.
_FILLS = ("segment_mean", "mean")


@contextlib.contextmanager
def single_threaded_blas():
    """Runs numpy's BLAS on one thread for the duration, in every thread of the process (reentrant).

    The surrogates' matrices are small; BLAS threads spinning beside the model's threads made their products
    and solves 10-300x slower on a busy 2-core machine (a 2 ms gram took 0.6 s), more than the model's time.
    The limit is the process's and OpenBLAS takes it from the main thread only, so it is set there (when the
    outermost holder enters) and restored when that holder leaves; elsewhere this does nothing, and threads
    working for a main-thread holder (the builder of `pipelined`) run under its limit.
    """
    global _BLAS_CONTROLLER, _BLAS_LIMIT, _BLAS_DEPTH
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # scikit-learn's dependency
            _BLAS_CONTROLLER = ThreadpoolController()  # finds the loaded BLAS libraries once
        except ImportError:  # pragma: no cover - scikit-learn always brings it
            _BLAS_CONTROLLER = False
    if _BLAS_DEPTH == 0 and _BLAS_CONTROLLER:
        _BLAS_LIMIT = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
    _BLAS_DEPTH += 1
    try:
        yield
    finally:
        _BLAS_DEPTH -= 1
        if _BLAS_DEPTH == 0 and _BLAS_LIMIT is not None:
            _BLAS_LIMIT.restore_original_limits()
            _BLAS_LIMIT = None


_BLAS_CONTROLLER = None
_BLAS_LIMIT = None
_BLAS_DEPTH = 0


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
    with single_threaded_blas():
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
    with single_threaded_blas():
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
    with single_threaded_blas():
        xy = np.matmul(np.swapaxes(weighted, 1, 2), np.asarray(y, dtype=weighted.dtype)[..., None])[..., 0]
    y_sum = (w * y).sum(axis=1)
    return solve_normal_equations(gram, x_sum, total_weight, xy, y_sum, valid, ridge, intercept, total)


@dataclasses.dataclass
class ExplainedInput:
    """One probe input as a local surrogate explains it: its interpretable features and what replaces them.

    Attributes:
        index: its position among the model's inputs.
        name: its probe input name.
        modality: "tabular" (one feature per column), "image" (superpixels), "sequence" (contiguous windows
            along the first axis: time steps) or "text" (tokens or windows of consecutive tokens).
        shape: one probe row's shape.
        background: the rows removed features take (this input's column of the bound background), or None.
        fill: "segment_mean", "mean" or a constant that hidden superpixels or windows take, or None.
        mask_id: the token id removed tokens of a text input take, else None.
        held: a held input (a padding mask, segment ids): it follows the text input and is not explained.
    """

    index: int
    name: str
    modality: str
    shape: Tuple[int, ...]
    background: Optional[Background] = None
    fill: Optional[Union[str, float]] = None
    mask_id: Optional[int] = None
    held: bool = False

    @property
    def map_shape(self) -> Tuple[int, ...]:
        """Shape of one probe's attribution: a value per column, per pixel, or per time step."""
        return perturbation_map_shape(self.shape, self.modality)


class CoalitionSource(abc.ABC):
    """Coalition masks (P, S, K) that `coalition_values` asks for as it builds each model call, instead of
    one (P, S, K) bool array held whole (KernelSHAP's per-background-row designs would be hundreds of MB)."""

    #: (P, S, K): probes, samples, interpretable features.
    shape: Tuple[int, int, int]

    @abc.abstractmethod
    def gather(self, probes: np.ndarray, samples: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Writes the masks of each (probes[n], samples[n]) into out[n] ((n, K) bool) and returns `out`;
        the pairs come in runs of one probe, its samples increasing."""

    def block(self, probes: slice, out: np.ndarray) -> np.ndarray:
        """Writes every sample's mask of the probes in `probes` into `out` ((n, S, K) bool) and returns it;
        for blocks whose every sample exists (no padding)."""
        n, s = out.shape[:2]
        first = range(self.shape[0])[probes].start
        self.gather(np.repeat(np.arange(first, first + n), s), np.tile(np.arange(s), n), out.reshape(n * s, -1))
        return out


class BatchedEngine:
    """Our engine: every probe of a block through the compiled model in large batches, one batched solve."""

    name = "batched"

    def explain(self, method: "LocalSurrogate", x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        return method.explain_batched(x, target, index)


class LocalSurrogate(AttributionMethod):
    """Base of the local-surrogate methods (LIME, KernelSHAP) on tabular, image, sequence and text inputs.

    Tabular probes (probes, features) have one interpretable feature per column and one attribution per
    column. Image probes (probes, H, W, C) have one per superpixel; the attribution is an (H, W) map holding
    each pixel's superpixel coefficient. Sequence probes (probes, T, C) have one per window of consecutive
    time steps (see `Segmentation`'s `window`); the attribution is a (T,) map holding each step's window
    coefficient. Text probes (probes, T) of token ids have one per token (or per window of consecutive
    tokens, `Segmentation(window=n)`); a removed token takes the text input's mask id (never another id), and
    padding positions are no feature: they stay padding in every perturbed row and get exactly 0. Held
    inputs (a padding mask, segment ids) keep the probe's values in every row, so a masked-out token keeps
    its padding-mask value of the probe (1: the model sees the mask id at a real position), and they get no
    attribution (None). Subclasses sample the perturbations and choose the regression.

    Multi-input models: each input is explained in turn, its features perturbed while every other input is
    held at the probe's own values, so each input's attributions explain f(x) as that input varies alone
    (KernelSHAP's sum to f(x) minus the model's mean output with only that input replaced). The result is
    one array per input, and the cost is the sum of each input's cost.

    Args:
        samples: perturbations per probe.
        background: what replaces a removed feature. Tabular: a `Background` ("probe", an array, k-means).
            Images and sequences: "segment_mean" (each superpixel's mean colour, each window's mean per
            channel), "mean" (the probe image's mean colour, the probe sequence's mean per channel over all
            steps), a number (a constant fill), or a `Background` of images or sequences. Defaults: "probe"
            for tabular inputs, "segment_mean" for images (as LIME), "mean" for sequences (a window's own mean
            keeps its sum, which a model that sums or averages over time barely notices). Multi-input models: "probe" or a
            `Background` with one array per input applies to every input; a dict {input name: one of the
            above} chooses per input (inputs left out take their default). Text inputs always take their
            mask id: a background or fill shared by all inputs applies to the others, and one named for a
            text input in a dict is an error.
        segmentation: superpixels of image probes: "slic", "quickshift", "grid" or a `Segmentation` (whose
            `window` also sets the time steps per window of sequence probes, and the tokens per window of
            text probes: 1 by default).
        engine: "batched" (ours: all probes through the compiled model in large batches, one batched solve)
            or "reference" (the shap / lime library, with the compiled batched predict as model function).
        seed: seed of the perturbations; a probe's draws depend only on the seed and its values.
        batch_size: model rows per call; by default about 8 MB of input per call (and at least the
            adapter's batch size).
        name: the logged name.
    """

    requires_gradients = False
    modalities = (TABULAR, IMAGE, SEQUENCE, TEXT)
    #: The library engine `engine="reference"` composes (set by each method).
    reference_engine: Optional[type] = None

    def __init__(
        self,
        samples,
        background: Optional[Union[BackgroundLike, float, Mapping[str, Any]]] = None,
        segmentation: Optional[Union[str, Segmentation]] = None,
        engine: str = "batched",
        seed: int = 0,
        batch_size: Optional[int] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name)
        if engine not in _ENGINES:
            raise ValueError(f"engine must be one of {_ENGINES}; received: {engine!r}")
        if engine == "reference" and self.reference_engine is None:
            raise ValueError(f"{self.name} has no reference engine; use engine='batched'")
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", alternative="None")
        self.samples = samples
        self.background_spec = background
        self.segmentation = as_segmentation(segmentation)
        self.engine = engine
        self._engine = BatchedEngine() if engine == "batched" else self.reference_engine()
        self.seed = int(seed)
        self.batch_size = batch_size
        self.inputs: List[ExplainedInput] = []
        self._input: Optional[ExplainedInput] = None  # the input being explained
        self._held: List[np.ndarray] = []  # the current block of probes, every input
        self._rates: Dict[int, float] = {}  # the model's predict rates by call size (see _measure_call_sizes)

    # --------------------------------------------------------------------- the input being explained
    @property
    def modality(self) -> str:
        return self._input.modality if self._input is not None else ""

    @property
    def background(self) -> Optional[Background]:
        return self._input.background if self._input is not None else None

    @property
    def fill(self) -> Optional[Union[str, float]]:
        return self._input.fill if self._input is not None else None

    # ------------------------------------------------------------------------------------- configuration
    def config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"samples": self.samples, "engine": self.engine, "seed": self.seed}
        if len(self.inputs) == 1:
            config.update(self.input_config(self.inputs[0]))
        for spec in self.inputs if len(self.inputs) > 1 else ():
            if spec.held:
                continue
            config.update({f"{spec.name}/{k}": v for k, v in self.input_config(spec).items()})
        return config

    def input_config(self, spec: ExplainedInput) -> Dict[str, Any]:
        """The logged parameters that belong to one input (prefixed by its name for multi-input models)."""
        config: Dict[str, Any] = {}
        if spec.background is not None:
            config.update(spec.background.config())
        elif spec.fill is not None:
            config["background"] = spec.fill if isinstance(spec.fill, str) else "constant"
            if not isinstance(spec.fill, str):
                config["background_value"] = float(spec.fill)
        if spec.modality == IMAGE:
            config.update(self.segmentation.config())
        elif spec.modality == SEQUENCE:
            config.update(self.segmentation.sequence_config(spec.shape[0]))
        elif spec.modality == TEXT:
            config.update({"mask_id": spec.mask_id, **self.segmentation.token_config()})
        return config

    def attribution_shape(self, input_shape):
        return perturbation_map_shape(tuple(input_shape))

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        self._float32_outputs = False  # seen from the blended calls: the model's outputs are float32
        self._rates = {}
        spec = self.background_spec
        if isinstance(spec, Mapping):
            unknown = sorted(set(map(str, spec)) - set(probe.names))
            if unknown:
                raise ValueError(
                    f"{self.name}: background names inputs {unknown} the probe does not have; its inputs are "
                    f"{probe.names}"
                )
        joint: Dict[str, Background] = {}  # one binding of a background shared by all inputs
        self.inputs = []
        for i, name in enumerate(probe.names):
            value = spec.get(name) if isinstance(spec, Mapping) else spec
            self.inputs.append(self._explained_input(probe, i, value, shared=not isinstance(spec, Mapping),
                                                     joint=joint))
        self._input = self.inputs[0]
        self._check(probe)
        text_lib.check_removal(model, probe, self.name)

    def _explained_input(self, probe, i: int, value, shared: bool, joint: Dict[str, Background]) -> ExplainedInput:
        name, modality = probe.names[i], probe.modality(i)
        spec = ExplainedInput(i, name, modality, probe.feature_shape(i))
        if name in probe.held:
            spec.held = True
            return spec
        if modality == TEXT:
            if value is not None and not shared:
                raise ValueError(
                    f"{self.name}: text input {name!r} is perturbed by replacing tokens with its mask id "
                    f"({probe.text[name].mask_id}; set mask_id= on the callback); it takes no background, and "
                    f"received {value!r}"
                )
            spec.mask_id = int(probe.text[name].mask_id)
            return spec
        if value is None:
            value = {TABULAR: "probe", IMAGE: "segment_mean"}.get(modality, "mean")
        if (isinstance(value, str) and value in _FILLS) or _is_number(value):
            if modality == TABULAR:
                raise ValueError(
                    f"{self.name}: background {value!r} fills image superpixels and sequence windows; for "
                    f"tabular input {name!r} use 'probe', an array of rows or a Background"
                    + (" (a dict {input name: background} chooses per input)" if len(probe.names) > 1 else "")
                )
            spec.fill = value if isinstance(value, str) else float(value)
        elif shared:
            # "probe" or one Background of every input: bound once to the whole probe, so row r of every input
            # is one background row.
            if "bound" not in joint:
                joint["bound"] = as_background(value).bind(probe, self.name)
            spec.background = joint["bound"].input(i)
        else:
            single = ProbeSet([probe.inputs[i]], [name], "array")
            spec.background = as_background(value).bind(single, f"{self.name} (input {name!r})").input(0)
        return spec

    def _check(self, probe) -> None:
        """Method-specific validation at setup."""

    @abc.abstractmethod
    def samples_per_probe(self, features: int) -> int:
        """Perturbations evaluated for a probe with `features` interpretable features."""

    def rows_per_call(self, row_elements: int, blended: bool = False) -> int:
        """Model rows per call: `batch_size` when given; else the call size the model was measured fastest at
        (`_measure_call_sizes`) up to the memory bound `largest_call`, or that bound where nothing was
        measured."""
        if self.batch_size is not None:
            return self.batch_size
        return fastest_call_size(self._rates, self.largest_call(row_elements, blended))

    def largest_call(self, row_elements: int, blended: bool = False) -> int:
        """The most rows a model call may take: about 8 MB of input built on the host (float32 rows, or one
        byte per element for rows `predict_blend` makes from their masks), at most `_ACTIVATIONS_PER_CALL`
        elements in the model's widest layer output, and at least the adapter's batch size."""
        # A row of the explained input travels with the held rows of every other input.
        held = sum(int(np.prod(s.shape)) for s in self.inputs if s is not self._input)
        host = _ELEMENTS_PER_CALL * (4 if blended else 1) // max(1, row_elements + held)
        device = _ACTIVATIONS_PER_CALL // max(1, self.model.widest_activation)
        return max(self.model.batch_size, min(host, device))

    def model_rows_per_probe(self, spec: "ExplainedInput", features: int) -> int:
        """Model rows one probe of `spec` costs: its samples (a method evaluating each against several
        replacement rows counts them too)."""
        return self.samples_per_probe(features)

    def _measure_call_sizes(self, arrays: List[np.ndarray], spec: "ExplainedInput", probes: int) -> None:
        """Where this call will make at least `_MEASURED_CALLS` model calls of the largest size, the model's
        predict rates at that size and below (`predict_rates`, measured once per model and cached), so that
        `rows_per_call` takes the fastest: on a small model the largest call can run a third slower than one
        a sixth its size (the layer outputs outgrow the caches)."""
        self._rates = {}
        if self.batch_size is not None:
            return
        largest = self.largest_call(int(np.prod(spec.shape)), blended=spec.modality == TABULAR)
        if largest < 2 * self.model.batch_size:  # no smaller size to take
            return
        if probes * self.model_rows_per_probe(spec, self.feature_count(spec)) >= _MEASURED_CALLS * largest:
            self._rates = self.model.predict_rates(arrays, largest)

    # ------------------------------------------------------------------------------------------- driving
    def attribute(self, inputs, target) -> List[np.ndarray]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        arrays = [np.asarray(a) for a in inputs]
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.name}: expected {len(self.inputs)} input arrays; received {len(arrays)}")
        arrays += [np.asarray(target, dtype=np.int64), joint_probe_keys(arrays)]
        out = []
        try:
            for spec in self.inputs:
                if spec.held:
                    out.append(None)
                    continue
                self._input = spec
                self._measure_call_sizes(arrays[:len(self.inputs)], spec, len(arrays[0]))
                # Host memory per probe: its samples times its interpretable features (tabular columns, time
                # windows, or a generous count of superpixels).
                width = self.feature_count(spec)
                block = max(1, _ELEMENTS_PER_BLOCK // (self.samples_per_probe(width) * width))
                out.append(map_batches(lambda *a: [self._explain_block(list(a[:-2]), a[-2], a[-1])], arrays,
                                       block)[0])
        finally:
            self._input, self._held = self.inputs[0], []
        return out

    def feature_count(self, spec: ExplainedInput) -> int:
        """Interpretable features of one probe of `spec` (for images, the most superpixels expected)."""
        if spec.modality == TABULAR:
            return spec.shape[0]
        if spec.modality == SEQUENCE:
            return int(self.segmentation.windows(spec.shape[0]).max()) + 1
        if spec.modality == TEXT:
            return -(-spec.shape[0] // self.segmentation.token_window())
        return _SUPERPIXELS_PER_IMAGE

    def _attribute(self, inputs, target) -> List[np.ndarray]:
        raise NotImplementedError("attribute() blocks probes by host memory and calls its engine directly")

    def _explain_block(self, inputs: List[np.ndarray], target: np.ndarray, index: np.ndarray) -> np.ndarray:
        self._held = inputs
        return self._engine.explain(self, inputs[self._input.index], target, index)

    def explain_batched(self, x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The batched engine's attributions of probes `x` of the input being explained."""
        if self.modality == TABULAR:
            return self._explain_tabular(x, target, index)
        segments = self.segments(x)
        texts = np.flatnonzero(segments.reshape(len(x), -1).max(axis=1) >= 0)
        if len(texts) == len(x):
            return features_to_map(self._explain_superpixels(x, segments, target, index), segments)
        # Texts that are all padding have no feature and get 0 (the block narrowed to the others, so that
        # a multi-input model's other inputs still take each probe's own values).
        out = np.zeros(segments.shape, dtype=np.float32)
        if len(texts):
            block = self._held
            self._held = [a[texts] for a in block]
            try:
                coefficients = self._explain_superpixels(x[texts], segments[texts], target[texts], index[texts])
            finally:
                self._held = block
            out[texts] = features_to_map(coefficients, segments[texts])
        return out

    def segments(self, x: np.ndarray, probes: Optional[np.ndarray] = None) -> np.ndarray:
        """(P, H, W) superpixels of images, (P, T) windows of sequences, or (P, T) token windows of texts (-1
        at padding) `x` of the input being explained; `probes` says which probe of the current block each of
        `x` is (a text's padding may come from its padding-mask input), by default x is the block."""
        if self.modality == SEQUENCE:
            return np.broadcast_to(self.segmentation.windows(x.shape[1]), x.shape[:2]).copy()
        if self.modality == TEXT:
            return self.segmentation.tokens(self.padding(x, probes))
        return np.stack([self.segmentation(image) for image in x])

    def padding(self, x: np.ndarray, probes: Optional[np.ndarray] = None) -> np.ndarray:
        """(P, T) bool padding positions of texts `x` of the text input being explained (as
        `ProbeSet.padding`: its padding id, or zeros of its padding-mask input at the same probes)."""
        rows = np.arange(len(x)) if probes is None else np.asarray(probes)
        inputs = [x if j == self._input.index else np.asarray(a)[rows] for j, a in enumerate(self._held)]
        return dataclasses.replace(self.probe, inputs=inputs).padding(self._input.index)

    @abc.abstractmethod
    def _explain_tabular(self, x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(P, features) attributions of tabular probes."""

    @abc.abstractmethod
    def _explain_superpixels(self, x, segments, target, index) -> np.ndarray:
        """(P, K_max) coefficients of each probe's superpixels or windows (0 beyond a probe's own count)."""

    # ------------------------------------------------------------------------------- model evaluation
    def replacements(self, x: np.ndarray, segments: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """What removed features take: (1 or P, B, *features) rows and their (B,) weights."""
        if self.background is not None:
            return self.background.data[None], self.background.weights
        if self.fill == "segment_mean":
            return np.stack([segment_means(image, s) for image, s in zip(x, segments)])[:, None], np.ones(1)
        if self.modality == TEXT:
            return np.full((1, 1) + x.shape[1:], self._input.mask_id, dtype=x.dtype), np.ones(1)
        if self.fill == "mean":  # per probe and channel, over the map axes (pixels or steps)
            axes = tuple(range(1, 1 + segments.ndim - 1))
            means = x.astype(np.float32).mean(axis=axes, keepdims=True)
            return np.broadcast_to(means, x.shape)[:, None], np.ones(1)
        return np.full((1, 1) + x.shape[1:], self.fill, dtype=np.float32), np.ones(1)

    def coalition_values(self, x: np.ndarray, masks, valid: np.ndarray, groups: Optional[np.ndarray],
                         replacement: np.ndarray, replacement_weights: np.ndarray, target: np.ndarray,
                         probes: Optional[np.ndarray] = None) -> np.ndarray:
        """The model's `target` output with each coalition's features kept, averaged over replacement rows
        ((P, S); 0 where not valid): `coalition_calls` run."""
        values, calls = self.coalition_calls(x, masks, valid, groups, replacement, replacement_weights, target, probes)
        streamed((build, evaluate) for build, evaluate, _ in calls)
        return values

    def coalition_calls(
        self,
        x: np.ndarray,
        masks: np.ndarray,
        valid: np.ndarray,
        groups: Optional[np.ndarray],
        replacement: np.ndarray,
        replacement_weights: np.ndarray,
        target: np.ndarray,
        probes: Optional[np.ndarray] = None,
        buffers: Optional["CallBuffers"] = None,
        exact_float32: bool = False,
    ) -> Tuple[np.ndarray, List[Tuple[Callable[[], Any], Callable[[Any], None], int]]]:
        """The model's `target` output with each coalition's features kept, averaged over replacement rows,
        as the values array and the model calls that fill it: (build, evaluate, complete) triples, each
        call's input built by `build()` and evaluated into the array by `evaluate(built)`, in order (see
        `streamed`: a caller may run the calls of several blocks as one stream); once a call has run, the
        first `complete` probes' values are all in.

        Args:
            x: (P, *features) probes.
            masks: (P, S, K) coalitions over interpretable features: a bool array, or a `CoalitionSource`
                that writes the masks each model call needs as it is built (no (P, S, K) array in memory).
            valid: (P, S) which coalitions exist (the rest are padding and are not evaluated).
            groups: (P, D) interpretable feature of each flattened input element, or None when features
                are the input's own columns; -1 marks a text's padding, which every row keeps.
            replacement: (1 or P, B, *features) rows removed features take from.
            replacement_weights: (B,) weights of those rows.
            target: (P,) explained class of each probe.
            probes: (P,) which probe of the current block each of `x` is (a multi-input model's other
                inputs take its values); by default x is the block.
            buffers: the input buffers of the stream these calls join (their own by default).
            exact_float32: the values may come as float32 where they are the model's outputs unchanged:
                tabular rows of one replacement of weight 1, once an earlier call saw float32 outputs (half
                the memory the model calls write).

        Returns:
            (P, S) values, 0 where not valid, filled as the calls run; the calls.
        """
        p_count, s_count = masks.shape[:2]
        shape = x.shape[1:]
        # Token ids stay integers: a perturbed text holds the probe's ids and the mask id, nothing else.
        dtype = x.dtype if self.modality == TEXT else np.float32
        flat_x = x.reshape(p_count, -1).astype(dtype)
        flat_r = replacement.reshape(replacement.shape[:2] + (-1,)).astype(dtype)
        kept = None if groups is None or self.modality != TEXT else groups < 0  # padding: always the probe's
        rows_b = flat_r.shape[1]
        # Tabular rows of one replacement each, every sample evaluated: blended inside the compiled call, from
        # the masks and each probe's row and replacement (`predict_blend`), in calls of whole probes.
        if (groups is None and rows_b == 1 and len(self.inputs) == 1 and self.modality == TABULAR
                and s_count <= self.rows_per_call(flat_x.shape[1], blended=True) and _all_true(valid)):
            return self._blended_values(flat_x, masks, flat_r[:, 0], replacement_weights[0], target,
                                        CallBuffers() if buffers is None else buffers, exact_float32)
        probe_of, sample_of = np.nonzero(valid)
        values = np.zeros((p_count, s_count))
        # Where each evaluated (probe, sample) lands in `values`: consecutive when every sample exists.
        flat_values = values.reshape(-1)
        positions = None if len(probe_of) == values.size else probe_of * s_count + sample_of
        block_probe = np.arange(p_count) if probes is None else np.asarray(probes)
        pairs_per_call = min(len(probe_of), max(1, self.rows_per_call(flat_x.shape[1]) // rows_b))
        pieces = list(chunks(len(probe_of), pairs_per_call))
        lazy = not isinstance(masks, np.ndarray)
        buffers = CallBuffers() if buffers is None else buffers
        first_call = buffers.reserve(len(pieces))
        if not lazy:
            flat_masks = masks.reshape(p_count * s_count, masks.shape[2])

        def perturbed(j: int):
            # An exact select by products (r * 0 + x * 1) over runs of one probe's samples, its row and
            # replacement broadcast (no gathers); or with np.take when runs are short. Both several times
            # faster than fancy indexing and copyto's where=, which cost more than the model here.
            p = probe_of[pieces[j]]
            if lazy:
                keep = masks.gather(p, sample_of[pieces[j]], buffers.take(first_call + j, "masks", (len(p), masks.shape[2]), bool))
            else:
                keep = (flat_masks[pieces[j]] if positions is None
                        else np.take(flat_masks, positions[pieces[j]], axis=0))
            rows = buffers.take(first_call + j, "rows", (len(p), rows_b, flat_x.shape[1]), dtype)
            if groups is not None and keep.shape[1] == 0:  # texts that are all padding: nothing to switch
                keep = np.zeros((len(p), groups.shape[1]), dtype=bool)
            elif kept is not None:  # a text: its padding (-1) is kept
                keep = np.take_along_axis(keep, np.maximum(np.take(groups, p, axis=0), 0), axis=1) | kept[p]
            else:
                starts = np.flatnonzero(np.concatenate([[True], p[1:] != p[:-1]]))
                if len(starts) * 16 <= len(p):
                    for a, e in zip(starts, np.append(starts[1:], len(p))):
                        q = p[a]
                        k = (keep[a:e] if groups is None else np.take(keep[a:e], groups[q], axis=1))[:, None, :]
                        np.multiply(~k, flat_r[q] if len(flat_r) > 1 else flat_r[0], out=rows[a:e])
                        rows[a:e] += k * flat_x[q]
                    return rows
                if groups is not None:
                    keep = np.take_along_axis(keep, np.take(groups, p, axis=0), axis=1)
            if len(flat_r) > 1:
                np.take(flat_r, p, axis=0, out=rows)
            else:
                np.copyto(rows, flat_r)
            keep = keep[:, None, :]
            rows *= ~keep
            rows += keep * np.take(flat_x, p, axis=0)[:, None, :]
            return rows

        def evaluate(j: int, rows: np.ndarray) -> None:
            p = probe_of[pieces[j]]
            held = np.repeat(block_probe[p], rows_b) if len(self.inputs) > 1 else None
            out = self.predict_rows(rows.reshape((-1,) + shape), np.repeat(target[p], rows_b), probes=held)
            mean = out.reshape(-1, rows_b) @ replacement_weights if rows_b > 1 else out * replacement_weights[0]
            flat_values[pieces[j] if positions is None else positions[pieces[j]]] = mean

        def complete(j: int) -> int:  # the probes whose every sample is in once call j has run
            end = pieces[j].stop
            if end == len(probe_of):
                return p_count
            return int(probe_of[end]) if probe_of[end] != probe_of[end - 1] else int(probe_of[end - 1])

        return values, [(functools.partial(perturbed, j), functools.partial(evaluate, j), complete(j))
                        for j in range(len(pieces))]

    def _blended_values(self, flat_x: np.ndarray, masks, removed: np.ndarray, weight: float,
                        target: np.ndarray, buffers: "CallBuffers", exact_float32: bool = False):
        """`coalition_calls` of tabular probes with one replacement row each (removed: (1 or P, K)), every
        sample evaluated: the rows are blended inside the compiled call (`predict_blend`) from the masks and
        each probe's row and replacement, in calls of whole probes, the next call's masks written on a second
        thread while the model runs."""
        p_count, s_count = masks.shape[:2]
        per_call = max(1, self.rows_per_call(flat_x.shape[1], blended=True) // s_count)
        pieces = list(chunks(p_count, per_call))
        removed = np.broadcast_to(removed, flat_x.shape)
        # Every entry is written; float32 where asked and the outputs are float32 with nothing to weigh (the
        # model calls write these pages first: half the page faults, on the thread that waits for the model).
        narrow = exact_float32 and weight == 1 and getattr(self, "_float32_outputs", False)
        values = np.empty((p_count, s_count), dtype=np.float32 if narrow else np.float64)
        lazy = not isinstance(masks, np.ndarray)
        first_call = buffers.reserve(len(pieces))

        def build(j: int) -> np.ndarray:
            sl = pieces[j]
            if not lazy:
                return masks[sl]
            return masks.block(sl, buffers.take(first_call + j, "masks", (sl.stop - sl.start,) + masks.shape[1:], bool))

        def evaluate(j: int, keep: np.ndarray) -> None:
            sl = pieces[j]
            predicted = self.model.predict_blend(keep, flat_x[sl], removed[sl], batch_size=keep.shape[0] * s_count)
            predicted = predicted.reshape(keep.shape[0], s_count, -1)
            # Each probe's target column, one strided copy per class present (take_along_axis builds index
            # arrays for every row: 1 ms a call here, while the model waits for the next call).
            if predicted.dtype != np.float32:
                self._float32_outputs = False
                if narrow:
                    raise TypeError(f"{self.name}: the model's outputs changed from float32 to {predicted.dtype}")
            elif not narrow:
                self._float32_outputs = True
            part, classes = values[sl], target[sl]
            first = classes[0]
            if np.all(classes == first):
                part[:] = predicted[:, :, first]
            else:
                for c in np.unique(classes):
                    chosen = np.flatnonzero(classes == c)
                    part[chosen] = predicted[chosen, :, c]
            if weight != 1:
                part *= weight

        return values, [(functools.partial(build, j), functools.partial(evaluate, j), pieces[j].stop)
                        for j in range(len(pieces))]

    def predict_rows(self, rows: np.ndarray, target: np.ndarray, probes: Optional[np.ndarray] = None) -> np.ndarray:
        """The `target` output of each row, through the compiled predict in calls of `rows_per_call` rows.

        `probes` says which probe of the current block each row perturbs; a multi-input model's other
        inputs take that probe's values. It may be left out when the model has a single input.
        """
        size = self.rows_per_call(int(np.prod(rows.shape[1:])))
        out = np.empty(len(rows), dtype=np.float64)
        for piece in chunks(len(rows), size):
            predicted = self.model_outputs(rows[piece], None if probes is None else probes[piece], size)
            out[piece] = predicted[np.arange(len(predicted)), target[piece]]
        return out

    def model_outputs(self, rows: np.ndarray, probes: Optional[np.ndarray], batch_size: Optional[int] = None):
        """The explained head's outputs (rows, classes) for rows of the input being explained, every other
        input held at the values of probe `probes[r]` of the current block."""
        if len(self.inputs) <= 1:
            return self.model.predict([rows], batch_size=batch_size)
        if probes is None:
            raise ValueError(f"{self.name}: a multi-input model needs the probe of each perturbed row")
        arrays = [rows if j == self._input.index else held[probes] for j, held in enumerate(self._held)]
        return self.model.predict(arrays, batch_size=batch_size)


class CallBuffers:
    """The input buffers of a stream of model calls (see `streamed`): call n writes into set n % 2, which no
    call still running uses, so a stream holds two calls' inputs however many blocks it spans."""

    def __init__(self):
        self._arrays: Dict[Tuple[int, str], np.ndarray] = {}
        self._calls = 0

    def reserve(self, count: int) -> int:
        """Numbers `count` more calls of the stream; returns the first one's."""
        self._calls += count
        return self._calls - count

    def take(self, call: int, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
        """Call `call`'s buffer `name`, of `shape` and `dtype` (grown when too small)."""
        key, size = (call % 2, name), int(np.prod(shape))
        array = self._arrays.get(key)
        if array is None or array.dtype != np.dtype(dtype) or array.size < size:
            array = self._arrays[key] = np.empty(size, dtype=dtype)
        return array[:size].reshape(shape)


def streamed(calls: Iterable[Tuple[Callable[[], Any], Callable[[Any], None]]]) -> None:
    """Runs `evaluate(build())` for each (build, evaluate) of `calls` in order, building the next call's input
    on a second thread while one is evaluated.

    Perturbed inputs are built by numpy while the model runs in TensorFlow; both release the GIL, so the
    host work overlaps the model's and costs little of its throughput. A call's build starts only after the
    call before the one before it was evaluated, so two alternating buffers suffice. `calls` may be a
    generator: it is advanced one call ahead on the second thread, just before that call's build, so that
    what it does between calls (setting up a block) also runs beside the model, not between its calls.
    """
    upcoming = iter(calls)

    def advance():
        call = next(upcoming, None)
        return None if call is None else (call[1], call[0]())

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(advance)
        while True:
            ready = pending.result()
            if ready is None:
                break
            pending = pool.submit(advance)
            evaluate, built = ready
            evaluate(built)


def pipelined(build, evaluate, count: int) -> None:
    """Calls `evaluate(j, build(j))` for j < count, building j + 1 on a second thread while j is evaluated
    (`streamed`)."""
    streamed((functools.partial(build, j), functools.partial(evaluate, j)) for j in range(count))


def padded(arrays: List[np.ndarray], shape: Tuple[int, ...], value=0) -> np.ndarray:
    """Stacks arrays of different leading sizes into one `shape` array, padding with `value`."""
    out = np.full((len(arrays),) + shape, value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


def _all_true(array: np.ndarray) -> bool:
    """`array.all()`, at once for one value broadcast (every stride 0: what callers pass for no padding)."""
    if array.size and not any(array.strides):
        return bool(array.flat[0])
    return bool(array.all())


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


