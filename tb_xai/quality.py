"""Explanation quality at every logged step, computed in the callback next to the attributions.

What needs the model, and so can only be measured while it trains:

- **faithfulness** (Petsiuk et al., 2018, RISE): deletion and insertion curves. A probe's features (pixels of an
  image map, superpixels being runs of equal value) are replaced by the baseline in attribution order, largest
  first (deletion), or put back into a baseline input in that order (insertion), at `points` + 1 evenly spaced
  fractions; the curve is the explained output of the target class and its area is the AUC over [0, 1]. The
  same curves for a random order are logged beside them: a faithful map deletes faster (lower deletion AUC)
  and inserts faster (higher insertion AUC) than random. Cost: ``4 (points + 1)`` forward rows per probe.
- **seeds**: sampling methods (those with a ``seed``: kernel_shap, lime, smoothgrad, expected_gradients) explain
  `seed_probes` probes again with another seed; the Spearman of the two maps per probe (mean), the nDCG@k of the
  two importances and the importance's between-seed noise are the estimator's own noise floor. Cost:
  about ``seed_probes / probes`` of the method's attribution time at every `seed_every`-th logged step (LIME on
  tabular data draws one sample set shared by all probes, so its twin costs about a whole LIME call).
- **sanity** (Adebayo et al., 2018, model randomization): when the callback is set up (before training, or
  after the first batch for a model built by it), every method explains the probes once with the model's
  trainable weights shuffled (their scale kept, what training put in them lost; restored exactly afterwards);
  each step's maps are compared with those (Spearman of |maps| per probe, mean over the probes explained for
  the same class as then). Maps that stay close to a randomized model's do not explain what it learned.
  Shuffling, not the weights at the start, so a pretrained model is checked too. Cost: one extra attribution
  per method, once.
- **drift**: the figures of `tb_xai.findings.step_figures` (nDCG@k against the previous and the reference step,
  Spearman against the previous step, the bootstrap floor, total |attribution|, entropy), from the arrays the
  callback holds: numpy only.

By default (`DEFAULT`) the callback computes drift, seeds and sanity, whose cost is small and bounded; faithfulness
costs several times a gradient method's own attribution time at every logged step (`bench/bench_quality.py`),
so it runs only when asked for (``quality="all"``, or a list or `Quality` naming "faithfulness"). A method that
does not explain an input (its attribution is None) has its figures from the inputs it explains; faithfulness
leaves the other inputs as they are.

Every figure is written as a TensorBoard scalar ``xai/<method>/<figure>`` (Time Series shows it) and put in the
epoch's ``logs`` as ``xai_<method>_<figure>`` for the callbacks after tb_xai (EarlyStopping, CSVLogger,
keras.callbacks.TensorBoard).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.scalar import summary_v2 as scalar_summary

from tb_xai import aggregate, findings as findings_lib, metadata

if TYPE_CHECKING:  # the reader imports this module for its tag names, and must not load the methods
    from tb_xai.methods.base import AttributionMethod

logger = logging.getLogger(__name__)

#: The groups of figures `quality=` chooses from.
GROUPS = ("drift", "faithfulness", "seeds", "sanity")
#: The groups computed by default: those whose cost is small and bounded (numpy over the logged arrays; the
#: randomized model's maps once; a seed twin on a few probes, for sampling methods only). Faithfulness costs
#: ``4 (points + 1)`` forward rows per probe at every logged step, several times a gradient method's own
#: attribution time, so it is opt-in.
DEFAULT = ("drift", "seeds", "sanity")
#: Figure names per group, as logged (``xai/<method>/<name>``).
FIGURES = {
    "drift": findings_lib.FIGURES,
    "faithfulness": ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"),
    "seeds": ("seed_spearman", "seed_ndcg", "seed_noise"),
    "sanity": ("sanity_spearman",),
}
#: What each figure is, in a legend's words (``{k}``: the nDCG's top-k size).
LABELS = {
    "ndcg_previous": "nDCG@{k} vs the previous step",
    "ndcg_reference": "nDCG@{k} vs the reference step",
    "spearman_previous": "Spearman vs the previous step",
    "ndcg_floor": "nDCG@{k} noise floor (probes resampled)",
    "spearman_floor": "Spearman noise floor (probes resampled)",
    "total_attribution": "total |attribution| (mean over probes)",
    "entropy": "entropy of |attribution| (0: one feature, 1: even)",
    "deletion_auc": "deletion AUC (lower: more faithful)",
    "insertion_auc": "insertion AUC (higher: more faithful)",
    "deletion_auc_random": "deletion AUC, random order",
    "insertion_auc_random": "insertion AUC, random order",
    "seed_spearman": "Spearman between two seeds",
    "seed_ndcg": "nDCG@{k} between two seeds",
    "seed_noise": "importance noise between two seeds",
    "sanity_spearman": "similarity to a randomized model",
}


def figure_labels(k: int) -> Dict[str, str]:
    """figure -> its label (`LABELS`) with the top-k size filled in."""
    return {figure: label.format(k=k) for figure, label in LABELS.items()}


#: Prefix of the scalar tags and of the keys added to Keras's epoch logs.
TAG_PREFIX, LOGS_PREFIX = "xai/", "xai_"
#: The callback's scalars of its own cost, at each logged step: its CPU time in the fit so far over the training
#: epochs', and (with a `max_overhead` budget) the scheduled epochs skipped since the step before.
OVERHEAD_TAG = TAG_PREFIX + "overhead"
SKIPPED_EPOCHS_TAG = TAG_PREFIX + "skipped_epochs"
#: The second seed of a sampling method is its own seed plus this.
SEED_OFFSET = 1
#: Input bytes of one faithfulness batch of perturbed rows (rows go to the adapter's predict in its batch size).
_FAITHFULNESS_BYTES = 64 * 2 ** 20


def scalar_tag(method: str, figure: str) -> str:
    return f"{TAG_PREFIX}{method}/{figure}"


def logs_key(method: str, figure: str) -> str:
    return f"{LOGS_PREFIX}{method}_{figure}"


def scalar_pb(tag: str, value: float) -> summary_pb2.Summary:
    """A scalar summary TensorBoard's Scalars / Time Series dashboards read (data class stated for both loaders).

    The proto `tensorboard.plugins.scalar.summary_v2.scalar_pb` builds, built from a template: a float32 scalar
    tensor and the scalar plugin's metadata (built once).
    """
    metadata_pb, tensor_type = _scalar_template()
    value = np.float32(value)
    pb = summary_pb2.Summary()
    pb.value.add(tag=tag, metadata=metadata_pb, tensor=tensor_type(value))
    return pb


@functools.lru_cache(maxsize=1)
def _scalar_template():
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

    reference = scalar_summary.scalar_pb("", 0.0)
    metadata_pb = reference.value[0].metadata
    metadata_pb.data_class = summary_pb2.DATA_CLASS_SCALAR
    shape = tensor_shape_pb2.TensorShapeProto()

    def tensor(value):
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[value])

    return metadata_pb, tensor


def parse_scalar_tag(tag: str) -> Optional[tuple]:
    """``(method, figure)`` of a quality scalar tag, or None for any other tag."""
    if not tag.startswith(TAG_PREFIX):
        return None
    parts = tag[len(TAG_PREFIX):].split("/")
    known = {f for names in FIGURES.values() for f in names}
    if len(parts) != 2 or parts[1] not in known:
        return None
    return parts[0], parts[1]


class Quality:
    """Which quality figures the callback computes, with their budgets.

    Args:
        figures: the groups to compute, from `GROUPS` ("drift", "faithfulness", "seeds", "sanity"); by default
            `DEFAULT`, every group but faithfulness, which must be asked for (it costs several times a gradient
            method's own attribution time).
        k: top-k size of the nDCG figures.
        reference_step: the step ``ndcg_reference`` compares with; the first logged step by default.
        points: faithfulness curve points (fractions 0, 1/points, ..., 1).
        baseline: what deleted features become: a number, or one array per input shaped like one probe row.
        faithfulness_probes: at most this many probes (evenly spaced over the set) get curves; None: all.
        seed_probes: probes re-explained with another seed (evenly spaced over the set).
        seed_every: re-explain at every this many logged steps of a method (the first included).
        bootstrap_samples: probe sets resampled for the noise floor.

    Example:
        >>> tb_xai.AttributionCallback("runs/exp1", x_test[:32], quality=Quality(["drift", "seeds"], seed_probes=4))
        >>> tb_xai.AttributionCallback("runs/exp1", x_test[:32], quality=Quality(GROUPS, faithfulness_probes=8))
    """

    def __init__(
        self,
        figures: Sequence[str] = DEFAULT,
        *,
        k: int = aggregate.DEFAULT_K,
        reference_step: Optional[int] = None,
        points: int = 16,
        baseline: Union[float, Sequence[np.ndarray]] = 0.0,
        faithfulness_probes: Optional[int] = None,
        seed_probes: int = 8,
        seed_every: int = 1,
        bootstrap_samples: int = findings_lib.BOOTSTRAP_SAMPLES,
    ):
        from tb_xai.methods.base import check_positive_int  # here: the reader imports this module, not methods

        if isinstance(figures, str):
            figures = [figures]
        unknown = [f for f in figures if f not in GROUPS]
        if unknown:
            raise ValueError(f"unknown quality figures {unknown}; choose from {list(GROUPS)}")
        self.figures = tuple(g for g in GROUPS if g in figures)
        self.k = check_positive_int(k, "k")
        if reference_step is not None:
            reference_step = check_positive_int(reference_step, "reference_step", minimum=0, alternative="None")
        self.reference_step = reference_step
        self.points = check_positive_int(points, "points", minimum=2)
        if isinstance(baseline, bool) or not (isinstance(baseline, (int, float)) or _is_arrays(baseline)):
            raise ValueError(f"baseline must be a number or one array per input; received: {baseline!r}")
        self.baseline = baseline
        if faithfulness_probes is not None:
            faithfulness_probes = check_positive_int(faithfulness_probes, "faithfulness_probes", alternative="None")
        self.faithfulness_probes = faithfulness_probes
        self.seed_probes = check_positive_int(seed_probes, "seed_probes", minimum=2)
        self.seed_every = check_positive_int(seed_every, "seed_every")
        self.bootstrap_samples = check_positive_int(bootstrap_samples, "bootstrap_samples", minimum=10)

    @classmethod
    def from_arg(cls, quality) -> "Quality":
        """`quality=` of the callback: True (the `DEFAULT` groups), "all" (every group), False or None (none),
        group names, or a Quality."""
        if isinstance(quality, Quality):
            return quality
        if quality is True:
            return cls()
        if isinstance(quality, str) and quality == "all":
            return cls(GROUPS)
        if quality is False or quality is None:
            return cls(())
        if isinstance(quality, (str, list, tuple)):
            return cls(quality)
        raise ValueError(
            f"quality must be True, False, \"all\", a list of {list(GROUPS)} or a tb_xai.quality.Quality; "
            f"received: {quality!r}"
        )

    def baselines(self, probe) -> List[np.ndarray]:
        """One float32 row per probe input: what deleted features become; ValueError naming shapes that do not fit."""
        shapes = [probe.feature_shape(i) for i in range(len(probe.inputs))]
        if np.isscalar(self.baseline):
            return [np.full(shape, float(self.baseline), np.float32) for shape in shapes]
        given = list(self.baseline) if isinstance(self.baseline, (list, tuple)) else [self.baseline]
        if [np.shape(b) for b in given] != shapes:
            raise ValueError(f"the faithfulness baseline has shapes {[np.shape(b) for b in given]}; expected one "
                             f"row per probe input, {shapes}")
        return [np.asarray(b, dtype=np.float32) for b in given]

    def config(self) -> dict:
        return {"figures": list(self.figures), "k": self.k, "reference_step": self.reference_step,
                "points": self.points, "seed_probes": self.seed_probes, "seed_every": self.seed_every,
                "faithfulness_probes": self.faithfulness_probes}


def _is_arrays(value) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return bool(values) and all(isinstance(v, np.ndarray) for v in values)


def is_sampling(method: "AttributionMethod") -> bool:
    """Whether the method draws random samples (it has an integer ``seed``)."""
    seed = getattr(method, "seed", None)
    return isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)


def reseeded(method: "AttributionMethod", offset: int = SEED_OFFSET) -> "AttributionMethod":
    """A twin of a set-up sampling method drawing with ``seed + offset``.

    A shallow copy keeps the setup (adapter, probe, background, segmentation); its private dict caches are
    emptied because they hold draws of the first seed (SmoothGrad keeps its unit noise between steps).
    """
    twin = copy.copy(method)
    for name, value in vars(method).items():
        if name.startswith("_") and isinstance(value, dict):
            setattr(twin, name, type(value)())
    twin.seed = int(method.seed) + int(offset)
    return twin


@contextlib.contextmanager
def randomized_weights(model, seed: int = 0):
    """The model with every trainable weight's values shuffled (seeded), restored exactly on exit.

    Adebayo et al.'s model randomization: the weights keep their scale but lose what training put in
    them. Shuffling in place, rather than a re-initialized clone, works for every model (subclassed ones
    included) and reuses the compiled functions the methods already hold, so nothing is traced again.
    """
    from keras import ops  # here: the reader imports this module and must not load Keras

    # Keras 3 variables hold their tensor in `.value`; tf_keras (Keras 2) ones are tf.Variables, whose
    # `.value` is a method.
    saved = [np.array(ops.convert_to_numpy(v.value() if callable(v.value) else v.value))
             for v in model.trainable_weights]
    rng = np.random.default_rng(seed)
    try:
        for variable, value in zip(model.trainable_weights, saved):
            variable.assign(rng.permutation(value.ravel()).reshape(value.shape))
        yield model
    finally:
        for variable, value in zip(model.trainable_weights, saved):
            variable.assign(value)


def evenly_spaced(count: int, n: int) -> np.ndarray:
    """`n` (at most `count`) indices spread evenly over ``range(count)``."""
    n = min(int(n), int(count))
    return np.unique(np.linspace(0, count - 1, n).round().astype(np.int64)) if n else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------------ maps
def flat_maps(attributions: Sequence[Optional[np.ndarray]], modalities: Sequence[str]) -> np.ndarray:
    """``[probes, features]`` |maps| of one step, every explained input's map flattened and concatenated.

    An input the method does not explain (its attribution is None) is left out, as the reader leaves it out.
    """
    maps = [aggregate.to_maps(a, np.shape(a)[1:], m, signed=False).reshape(len(a), -1)
            for a, m in zip(attributions, modalities) if a is not None]
    if not maps:
        raise ValueError("the method explained none of the probe's inputs (every attribution is None)")
    return np.concatenate(maps, axis=1).astype(np.float64)


def _element_scores(adapter, attribution: np.ndarray, input_shape: tuple, modality: str):
    """(scores [P, E], how an element mask [P, E] becomes an input mask [P, *input_shape]).

    Elements are what the attribution ranks: a tabular feature, an image pixel (all its channels), a sequence
    value. Maps smaller than the image (none logged today) are resized to it first.
    """
    a = np.asarray(attribution, dtype=np.float64)
    p = len(a)
    if modality == metadata.IMAGE and a.ndim == 4:
        a = a.sum(axis=-1)
    if modality == metadata.IMAGE and a.shape[1:] != input_shape[:2]:
        a = np.asarray(adapter.resize(a.astype(np.float32), input_shape[:2]), dtype=np.float64)
    shape = a.shape[1:]
    if input_shape[:len(shape)] != shape:
        raise ValueError(f"an attribution of shape {shape} does not rank the elements of inputs {input_shape}")
    extra = input_shape[len(shape):]

    def to_input(mask: np.ndarray) -> np.ndarray:
        mask = mask.reshape((len(mask),) + shape + (1,) * len(extra))
        return np.broadcast_to(mask, (len(mask),) + tuple(input_shape))

    return a.reshape(p, -1), to_input


def faithfulness(
    adapter,
    inputs: Sequence[np.ndarray],
    attributions: Sequence[np.ndarray],
    target: np.ndarray,
    modalities: Sequence[str],
    baselines: Sequence[np.ndarray],
    points: int = 16,
    seed: int = 0,
) -> Dict[str, np.ndarray]:
    """Deletion and insertion AUC per probe, in attribution order and in a random order.

    Args:
        adapter: the callback's `ModelAdapter` (its compiled, batched predict).
        inputs: one ``[P, *shape]`` array per model input.
        attributions: the method's attributions, one per input; None for an input it does not explain, which
            is then left as it is in every curve.
        target: ``[P]`` explained class per probe.
        modalities: each input's modality.
        baselines: one row per input (``shape``) the removed elements take.
        points: curve points (fractions 0, 1/points, ..., 1).
        seed: seed of the random orders.

    Returns:
        ``deletion_auc``, ``insertion_auc``, ``deletion_auc_random``, ``insertion_auc_random``: ``[P]`` float64.
        Elements of all explained inputs are ranked together.
    """
    p = len(target)
    scored = {i: _element_scores(adapter, a, x.shape[1:], m)
              for i, (a, x, m) in enumerate(zip(attributions, inputs, modalities)) if a is not None}
    if not scored:
        raise ValueError("faithfulness needs an attribution of at least one input; every attribution is None")
    scores = np.concatenate([s for s, _ in scored.values()], axis=1)
    e = scores.shape[1]
    rng = np.random.default_rng(seed)
    random_keys = rng.random((p, e))
    counts = np.round(np.linspace(0, e, points + 1)).astype(np.int64)
    row_bytes = sum(int(np.prod(x.shape[1:])) * 4 for x in inputs)
    per_block = max(1, _FAITHFULNESS_BYTES // max(1, row_bytes * 4 * (points + 1)))
    curves = np.empty((2, 2, p, points + 1))  # [order, deletion/insertion, P, points+1]
    for start in range(0, p, per_block):
        block = slice(start, min(p, start + per_block))
        b = block.stop - block.start
        # rank[o, p, j]: position of element j in probe p's order o (attribution, random); an element is
        # removed at fraction t when its rank is below n_t.
        rank = np.empty((2, b, e), dtype=np.int64)
        rank[0][np.arange(b)[:, None], np.argsort(-scores[block], axis=1, kind="stable")] = np.arange(e)
        rank[1] = np.argsort(random_keys[block], axis=1)
        mask = rank[:, :, None, :] < counts[None, None, :, None]  # [2, b, points+1, E]
        rows = []
        offset = 0
        for i, (x, base) in enumerate(zip(inputs, baselines)):
            if i not in scored:  # an input the method does not explain stays as it is
                whole = np.asarray(x[block])[None, None, :, None]
                rows.append(np.broadcast_to(whole, (2, 2, b, points + 1) + x.shape[1:]).reshape((-1,) + x.shape[1:]))
                continue
            size, to_input = scored[i][0].shape[1], scored[i][1]
            m = mask[..., offset:offset + size].reshape(-1, size)  # [2*b*T, size]
            offset += size
            m = to_input(m).reshape((2, b, points + 1) + x.shape[1:])
            xs = np.asarray(x[block], dtype=np.float32)[None, :, None]
            base = np.asarray(base, dtype=np.float32)[None, None, None]
            deleted = np.where(m, base, xs)
            inserted = np.where(m, xs, base)
            rows.append(np.stack([deleted, inserted], axis=1).reshape((-1,) + x.shape[1:]))
        out = np.asarray(adapter.predict(rows), dtype=np.float64)
        tiled = np.tile(np.repeat(np.asarray(target[block]), points + 1), 4)
        picked = out[np.arange(len(out)), np.minimum(tiled, out.shape[1] - 1)]
        curves[:, :, block] = picked.reshape(2, 2, b, points + 1)
    auc = (curves[..., 1:] + curves[..., :-1]).sum(axis=-1) / (2.0 * points)
    return {"deletion_auc": auc[0, 0], "insertion_auc": auc[0, 1],
            "deletion_auc_random": auc[1, 0], "insertion_auc_random": auc[1, 1]}


def seed_figures(first: np.ndarray, second: np.ndarray, k: int) -> Dict[str, float]:
    """The seed figures of one step from two seeds' ``[probes, features]`` |maps| of the same probes.

    ``seed_spearman``: the mean over probes of the Spearman of their two maps; ``seed_ndcg``: nDCG@k of the
    second seed's importance graded by the first's; ``seed_noise``: the standard deviation of one seed's
    importance, ``sqrt(mean((a - b)^2) / 2)`` from the two importances a, b (measured on the subset and not
    scaled down to the whole probe set, so the noise floor errs on the side of fewer findings).
    """
    a, b = first.mean(axis=0), second.mean(axis=0)
    with np.errstate(invalid="ignore"):
        rho = findings_lib.paired_spearman(first, second)
    return {
        "seed_spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        "seed_ndcg": findings_lib.ndcg_at_k(a, b, k),
        "seed_noise": float(np.sqrt(np.mean((a - b) ** 2) / 2.0)),
    }


def sanity_figures(reference: np.ndarray, maps: np.ndarray, same_target: np.ndarray,
                   reference_ranks: Optional[np.ndarray] = None) -> Dict[str, float]:
    """``sanity_spearman``: the mean Spearman of each probe's |map| with its map under the randomized model,
    over the probes explained for the same class then and now (`same_target`); {} when none is, when the
    shapes differ, or when every map is constant (a saturated output has no ranking to compare).

    `reference_ranks`: the reference's ``findings._unit_ranks``, when kept from an earlier step (each row's
    ranks are its own, so a subset of rows gives the same values as ranking that subset)."""
    same = np.asarray(same_target, dtype=bool)
    if not same.any() or reference.shape != maps.shape:
        return {}
    if reference_ranks is None:
        values = findings_lib.paired_spearman(reference[same], maps[same])
    else:
        values = findings_lib._paired_unit(reference_ranks[same], findings_lib._unit_ranks(maps[same]))
    if not np.isfinite(values).any():
        return {}
    return {"sanity_spearman": float(np.nanmean(values))}


# -------------------------------------------------------------------------------------- the callback side
class QualityMonitor:
    """The callback's quality state: the randomized model's maps, earlier steps' importance, the seed twins.

    Never raises into training: a figure that fails is warned about once per (method, group) and left out.
    """

    def __init__(self, quality: Quality):
        self.quality = quality
        self.adapter = None
        self.probe = None
        self._modalities: List[str] = []
        self._reference: Dict[str, tuple] = {}  # method -> (targets, maps) of the randomized model
        self._reference_model = None
        self._previous: Dict[str, np.ndarray] = {}
        self._drift_reference: Dict[str, np.ndarray] = {}
        self._twins: Dict[str, "AttributionMethod"] = {}
        self._observed: list = []
        self._baselines: List[np.ndarray] = []
        self._seen: Dict[str, int] = {}  # logged steps per method
        self._warned: set = set()
        self._logs: Dict[int, Dict[str, float]] = {}
        #: the last logged step -> method -> figure -> per-probe array (faithfulness; "probes": which ones).
        self.per_probe: Dict[int, Dict[str, Dict[str, np.ndarray]]] = {}
        #: method -> group -> seconds at the last logged step ("sanity_reference": the randomized model's maps,
        #: once); compare with the callback's `timings` (the method's own attribution time).
        self.timings: Dict[str, Dict[str, float]] = {}

    def bind(self, adapter, probe, methods: Sequence["AttributionMethod"], resolve_targets) -> None:
        """After the callback's setup: keeps the adapter and takes the randomized model's maps once."""
        self._baselines = self.quality.baselines(probe)  # a configuration mistake fails here, before training
        self.adapter, self.probe = adapter, probe
        self._modalities = [probe.modality(i) for i in range(len(probe.inputs))]
        self._twins = {}
        # Once per model: another fit() of the same model keeps the maps of its first randomization.
        if "sanity" not in self.quality.figures or self._reference_model is adapter.model:
            return
        self._reference_model, self._reference = adapter.model, {}
        try:
            targets = np.asarray(resolve_targets(adapter.predict(probe.inputs)))
            with randomized_weights(adapter.model):
                for method in methods:
                    start = time.perf_counter()
                    try:
                        maps = flat_maps(method.attribute(probe.inputs, targets), self._modalities)
                        if np.isfinite(maps).all():  # its ranks too: the same at every step
                            self._reference[method.name] = (targets, maps, findings_lib._unit_ranks(maps))
                    except Exception as error:
                        self._warn(method.name, "sanity", error)
                    self.timings.setdefault(method.name, {})["sanity_reference"] = time.perf_counter() - start
        except Exception as error:  # never break training
            self._warn("", "sanity", error)

    def observe(self, method: "AttributionMethod", attributions: Sequence[np.ndarray], targets: np.ndarray) -> None:
        """Keeps a method's logged attributions of this step for `write` (None for an input it does not explain)."""
        if any(a is not None for a in attributions):
            self._observed.append((method, list(attributions), np.asarray(targets)))

    def write(self, step: int, writer) -> None:
        """Computes this step's figures of every observed method, writes them as scalars, keeps them for logs."""
        observed, self._observed = self._observed, []
        if not self.quality.figures or self.adapter is None:
            return
        logs: Dict[str, float] = {}
        floors = self._floors(observed)
        for method, attributions, targets in observed:
            try:
                values = self._figures(method, attributions, targets, step, floors.get(method.name))
            except Exception as error:  # never break training
                self._warn(method.name, "every", error)
                continue
            for figure, value in values.items():
                if not np.isfinite(value):
                    continue
                logs[logs_key(method.name, figure)] = float(value)
                try:
                    writer.write(scalar_pb(scalar_tag(method.name, figure), float(value)), step)
                except Exception as error:
                    self._warn(method.name, "writing", error)
        self._logs = {step: logs}

    def logs_for(self, step: int) -> Dict[str, float]:
        """The ``xai_*`` figures of `step`, if it was logged."""
        return dict(self._logs.get(step, {}))

    # ------------------------------------------------------------------------------------------ figures
    def _floors(self, observed) -> Dict[str, tuple]:
        """method -> (its |maps|, its bootstrap floors, the seconds they took) of this step's observed methods, the
        floors of every method whose maps have one shape computed together (`findings.bootstrap_floors` of many steps
        at once: each one's values as alone); {} where drift is not computed or that fails (then each method computes
        its own)."""
        if "drift" not in self.quality.figures or len(observed) < 2:
            return {}
        start = time.perf_counter()
        try:
            maps = {method.name: flat_maps(attributions, self._modalities) for method, attributions, _ in observed}
            by_shape: Dict[tuple, List[str]] = {}
            for name, m in maps.items():
                by_shape.setdefault(m.shape, []).append(name)
            out = {}
            for names in by_shape.values():
                floors = findings_lib.bootstrap_floors(np.stack([maps[n] for n in names]), self.quality.k,
                                                       self.quality.bootstrap_samples)
                for i, n in enumerate(names):
                    out[n] = (maps[n], {name: float(values[i]) for name, values in floors.items()})
        except Exception:  # each method computes its own, and warns there if it fails again
            return {}
        seconds = (time.perf_counter() - start) / len(out)
        return {n: (m, f, seconds) for n, (m, f) in out.items()}

    def _figures(self, method, attributions, targets, step, floors=None) -> Dict[str, float]:
        """`floors`: `_floors`' (maps, bootstrap floors, seconds) of the method, when computed with other methods'."""
        q, out = self.quality, {}
        maps = flat_maps(attributions, self._modalities) if floors is None else floors[0]
        if "drift" in q.figures:
            out.update(self._timed("drift", method.name,
                                   lambda: self._drift(method.name, maps, step, None if floors is None else floors[1]),
                                   0.0 if floors is None else floors[2]))
        if "faithfulness" in q.figures:
            out.update(self._timed("faithfulness", method.name,
                                   lambda: self._faithfulness(method.name, attributions, targets, step)))
        seen = self._seen[method.name] = self._seen.get(method.name, 0) + 1
        if "seeds" in q.figures and is_sampling(method) and (seen - 1) % q.seed_every == 0:
            out.update(self._timed("seeds", method.name, lambda: self._seeds(method, maps, targets)))
        if "sanity" in q.figures and method.name in self._reference:
            out.update(self._timed("sanity", method.name, lambda: self._sanity(method.name, maps, targets)))
        return out

    def _timed(self, group, method, compute, spent: float = 0.0) -> Dict[str, float]:
        """`compute()`, its seconds (plus `spent`, computed for it before) kept in `timings`; {} if it fails."""
        start = time.perf_counter()
        try:
            return compute()
        except Exception as error:  # never break training
            self._warn(method, group, error)
            return {}
        finally:
            self.timings.setdefault(method, {})[group] = time.perf_counter() - start + spent

    def _drift(self, name: str, maps: np.ndarray, step: int, floors=None) -> Dict[str, float]:
        importance = maps.mean(axis=0)
        q = self.quality
        if name not in self._drift_reference and (q.reference_step is None or step == q.reference_step):
            self._drift_reference[name] = importance
        values = findings_lib.step_figures(maps, self._previous.get(name), self._drift_reference.get(name), q.k,
                                           q.bootstrap_samples, floors=floors)
        self._previous[name] = importance
        return values

    def _faithfulness(self, name, attributions, targets, step) -> Dict[str, float]:
        q, probe = self.quality, self.probe
        chosen = (np.arange(len(targets)) if q.faithfulness_probes is None
                  else evenly_spaced(len(targets), q.faithfulness_probes))
        explained = [None if a is None else a[chosen] for a in attributions]
        auc = faithfulness(self.adapter, [x[chosen] for x in probe.inputs], explained, targets[chosen],
                           self._modalities, self._baselines, q.points)
        if step not in self.per_probe:  # only the latest step: memory stays bounded over long runs
            self.per_probe = {step: {}}
        self.per_probe[step][name] = dict(auc, probes=chosen)
        return {figure: float(values.mean()) for figure, values in auc.items()}

    def _seeds(self, method, maps, targets) -> Dict[str, float]:
        twin = self._twins.get(method.name)
        if twin is None:
            twin = self._twins[method.name] = reseeded(method)
        chosen = evenly_spaced(len(targets), self.quality.seed_probes)
        again = flat_maps(twin.attribute([x[chosen] for x in self.probe.inputs], targets[chosen]), self._modalities)
        return seed_figures(maps[chosen], again, self.quality.k)

    def _sanity(self, name, maps, targets) -> Dict[str, float]:
        reference_targets, reference, ranks = self._reference[name]
        return sanity_figures(reference, maps, np.asarray(targets) == reference_targets, ranks)

    def _warn(self, method: str, group: str, error: Exception) -> None:
        if (method, group) not in self._warned:
            self._warned.add((method, group))
            logger.warning("tb_xai: the %s quality figures of %s failed and are left out: %s: %s",
                           group, method or "the probe set", type(error).__name__, error)
