"""Aggregations of logged attributions: the one implementation behind the plugin, `tb_xai.load` and the plots.

Everything here is pure numpy over arrays laid out as logged: attributions ``[steps, probes, *attribution_shape]``,
targets ``[steps, probes]``. A *map* is one probe's attribution after channel reduction (see :func:`map_shape`);
a step's *importance* is the mean map over the counted probes. How a tag's steps are stacked
(:func:`stack_steps`), how targets line up with them (:func:`align_targets`), what a map element is called
(`tb_xai.layout`) and which methods are compared (:func:`agreement_by_shape`) are decided here too, so
the dashboard, ``tb_xai.load`` and the plots cannot drift apart.

Example:
    >>> import numpy as np
    >>> a = np.array([[[1.0, -3.0], [3.0, -1.0]]])  # 1 step, 2 probes, 2 features
    >>> importance, counts = feature_importance(a)
    >>> importance.tolist(), counts.tolist()
    ([[2.0, 2.0]], [2])
"""

from __future__ import annotations

import itertools
from typing import Mapping, Optional, Sequence

import numpy as np

from tb_xai.layout import element_names, map_shape  # noqa: F401 - the layout rule, re-exported for callers
from tb_xai.modalities import TABULAR

#: Size of the top-k sets compared by rank stability and agreement, unless a caller asks for another.
DEFAULT_K = 10


def stack_steps(values_by_step: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
    """Stacks one tag's per-step values, keeping the steps shaped like the latest one.

    A tag changes shape when the model or the probe set changed mid-run (a resumed run with more features, or
    a new probe set). The latest shape is what the run is writing now, so its steps are kept and the steps
    of any other shape are left out and reported, rather than making the whole tag unreadable.

    Args:
        values_by_step: step -> that step's array.

    Returns:
        ``(steps, values, dropped)``: ``[n]`` int64 ascending steps of the latest shape, ``[n, *shape]`` their
        values stacked (``(0,)`` when there is no step), and the list of steps left out, ascending.

    Example:
        >>> steps, values, dropped = stack_steps({0: np.zeros(3), 1: np.zeros(4), 2: np.ones(4)})
        >>> steps.tolist(), values.shape, dropped
        ([1, 2], (2, 4), [0])
    """
    if not values_by_step:
        return np.zeros(0, dtype=np.int64), np.zeros((0,)), []
    ordered = sorted(int(s) for s in values_by_step)
    arrays = {step: np.asarray(values_by_step[step]) for step in ordered}
    shape = arrays[ordered[-1]].shape
    kept = [s for s in ordered if arrays[s].shape == shape]
    dropped = [s for s in ordered if arrays[s].shape != shape]
    return np.array(kept, dtype=np.int64), np.stack([arrays[s] for s in kept]), dropped


def align_targets(
    steps: Sequence[int], target_steps: Sequence[int], target_values: Sequence[np.ndarray], probes: int
) -> np.ndarray:
    """The targets logged at `steps`, as ``[len(steps), probes]``; -1 (matches no class) where none fits.

    A step has no usable targets when none were logged at it, or when they were logged for another number of
    probes.

    Args:
        steps: the steps to align to (an attribution tag's steps).
        target_steps: the steps the targets were logged at.
        target_values: one ``[probes]`` array per target step.
        probes: the number of probes of the attributions.

    Example:
        >>> align_targets([0, 1, 2], [0, 2], [np.array([1, 0]), np.array([0, 0])], 2).tolist()
        [[1, 0], [-1, -1], [0, 0]]
    """
    by_step = {int(s): np.asarray(v) for s, v in zip(target_steps, target_values)}
    aligned = np.full((len(steps), int(probes)), -1, dtype=np.int64)
    for row, step in enumerate(steps):
        value = by_step.get(int(step))
        if value is not None and value.shape == (int(probes),):
            aligned[row] = value
    return aligned




def to_maps(
    attributions: np.ndarray, attribution_shape: Sequence[int], modality: str, *, signed: bool
) -> np.ndarray:
    """Reduces attributions to maps: ``[*lead, *attribution_shape] -> [*lead, *map_shape]``.

    Image channels are summed, of ``|a|`` when `signed` is False (so channels of opposite sign do not cancel),
    of ``a`` when it is True. Other shapes only take the absolute value when `signed` is False.

    Args:
        attributions: array whose trailing axes are `attribution_shape`.
        attribution_shape: the per-probe attribution shape.
        modality: the logged modality.
        signed: keep the sign.
    """
    shape = tuple(int(d) for d in attribution_shape)
    values = np.asarray(attributions)
    if values.shape[values.ndim - len(shape):] != shape:
        raise ValueError(
            f"attributions of shape {values.shape} do not end with the attribution shape {shape}"
        )
    if not signed:
        values = np.abs(values)
    if map_shape(shape, modality) != shape:
        values = values.sum(axis=-1)
    return values


def feature_importance(
    attributions: np.ndarray,
    *,
    modality: str = TABULAR,
    signed: bool = False,
    targets: Optional[np.ndarray] = None,
    target: Optional[int] = None,
    valid: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step importance: the mean map over probes, optionally only over probes explained for one class.

    Args:
        attributions: ``[steps, probes, *attribution_shape]``.
        modality: the logged modality (images are channel-reduced, see :func:`to_maps`).
        signed: average signed attributions instead of magnitudes.
        targets: ``[steps, probes]`` class explained per probe; required when `target` is given.
        target: a class index: average only the probes whose target at that step was it.
        valid: ``[probes, *map_shape]`` bools: each map element is averaged only over the probes where it is
            True (a text input's non-padding positions); NaN where it is True in no counted probe.

    Returns:
        ``(importance, counts)``: ``[steps, *map_shape]`` float64 means (NaN where no probe counted) and
        ``[steps]`` numbers of probes averaged.
    """
    values = np.asarray(attributions)
    if values.ndim < 3:
        raise ValueError(
            f"attributions must be [steps, probes, *attribution_shape]; received shape {values.shape}"
        )
    steps, probes = values.shape[:2]
    maps = to_maps(values, values.shape[2:], modality, signed=signed)
    flat = maps.reshape(steps, probes, int(np.prod(maps.shape[2:])))
    if valid is not None:
        return _valid_importance(flat, maps.shape[2:], targets, target, valid)
    if target is None:
        importance = flat.mean(axis=1, dtype=np.float64)
        counts = np.full(steps, probes, dtype=np.int64)
    else:
        if targets is None:
            raise ValueError(f"target={target!r} needs the per-step targets; received targets=None")
        targets = np.asarray(targets)
        if targets.shape != (steps, probes):
            raise ValueError(
                f"targets must be [steps, probes] = {(steps, probes)}; received shape {targets.shape}"
            )
        mask = (targets == target).astype(flat.dtype if flat.dtype.kind == "f" else np.float64)
        counts = mask.sum(axis=1).astype(np.int64)
        sums = np.einsum("sp,spm->sm", mask, flat, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            importance = sums / counts[:, None]
    return importance.reshape((steps,) + maps.shape[2:]), counts


def _probe_weights(steps: int, probes: int, targets, target) -> np.ndarray:
    """``[steps, probes]`` 1.0 for the probes counted at each step (those explained for `target`), else 0.0."""
    if target is None:
        return np.ones((steps, probes))
    if targets is None:
        raise ValueError(f"target={target!r} needs the per-step targets; received targets=None")
    targets = np.asarray(targets)
    if targets.shape != (steps, probes):
        raise ValueError(f"targets must be [steps, probes] = {(steps, probes)}; received shape {targets.shape}")
    return (targets == target).astype(np.float64)


def _valid_importance(flat: np.ndarray, map_shape_: tuple, targets, target, valid) -> tuple:
    steps, probes, size = flat.shape
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (probes,) + tuple(map_shape_):
        raise ValueError(
            f"valid must be [probes, *map_shape] = {(probes,) + tuple(map_shape_)}; received shape {valid.shape}"
        )
    weights = _probe_weights(steps, probes, targets, target)
    counted = weights[:, :, None] * valid.reshape(1, probes, size)  # [steps, probes, elements]
    sums = np.einsum("spm,spm->sm", counted, flat, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        importance = sums / counted.sum(axis=1)
    counts = weights.sum(axis=1).astype(np.int64)
    return importance.reshape((steps,) + tuple(map_shape_)), counts


def words_of(tokens: np.ndarray, valid: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
    """The distinct words of a text input's probes, in order of first occurrence (probe 0 left to right, then
    probe 1, ...), counting only `valid` (non-padding) positions.

    Args:
        tokens: ``[probes, positions]`` strings.
        valid: ``[probes, positions]`` bools.

    Returns:
        ``(words, index, counts)``: the words, ``[probes, positions]`` int64 index of each position's word (-1
        where not valid), and ``[words]`` occurrences of each.

    Example:
        >>> words, index, counts = words_of(np.array([["a", "b", "a"]], dtype=object), np.array([[1, 1, 0]], bool))
        >>> words, index.tolist(), counts.tolist()
        (['a', 'b'], [[0, 1, -1]], [1, 1])
    """
    tokens = np.asarray(tokens, dtype=object)
    valid = np.asarray(valid, dtype=bool)
    if tokens.ndim != 2 or valid.shape != tokens.shape:
        raise ValueError(f"tokens and valid must be one [probes, positions] shape; received {tokens.shape} and "
                         f"{valid.shape}")
    index = np.full(tokens.shape, -1, dtype=np.int64)
    if not valid.any():
        return [], index, np.zeros(0, dtype=np.int64)
    kept = tokens[valid].astype(str)
    unique, first, inverse, counts = np.unique(kept, return_index=True, return_inverse=True, return_counts=True)
    by_first = np.argsort(first, kind="stable")  # sorted unique -> first-occurrence order
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(by_first.size)
    index[valid] = rank[inverse.reshape(-1)]
    return [str(w) for w in unique[by_first]], index, counts[by_first].astype(np.int64)


def word_importance(
    attributions: np.ndarray,
    tokens: np.ndarray,
    valid: np.ndarray,
    *,
    signed: bool = False,
    targets: Optional[np.ndarray] = None,
    target: Optional[int] = None,
) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Per step, each word's mean attribution over its valid (non-padding) occurrences in the counted probes.

    Args:
        attributions: ``[steps, probes, positions]`` (one value per token).
        tokens: ``[probes, positions]`` strings.
        valid: ``[probes, positions]`` bools (False at padding).
        signed: average signed attributions instead of magnitudes.
        targets: ``[steps, probes]`` class explained per probe; required when `target` is given.
        target: count only the occurrences in probes explained for this class at each step.

    Returns:
        ``(words, importance, occurrences, probe_counts)``: the words (:func:`words_of`), ``[steps, words]``
        float64 means (NaN where a word has no counted occurrence), ``[words]`` occurrences over every probe and
        ``[steps]`` numbers of probes counted.

    Example:
        >>> a = np.array([[[1.0, -3.0, 0.0], [2.0, 0.0, 0.0]]])  # 1 step, 2 probes, 3 positions
        >>> t = np.array([["a", "b", "<pad>"], ["b", "<pad>", "<pad>"]], dtype=object)
        >>> words, values, occurrences, _ = word_importance(a, t, t != "<pad>", signed=True)
        >>> words, values.tolist(), occurrences.tolist()
        (['a', 'b'], [[1.0, -0.5]], [1, 2])
    """
    values = np.asarray(attributions, dtype=np.float64)
    if values.ndim != 3:
        raise ValueError(f"attributions must be [steps, probes, positions]; received shape {values.shape}")
    steps, probes, positions = values.shape
    if np.shape(tokens) != (probes, positions):
        raise ValueError(f"tokens must be [probes, positions] = {(probes, positions)}; received shape "
                         f"{np.shape(tokens)}")
    words, index, occurrences = words_of(tokens, valid)
    if not signed:
        values = np.abs(values)
    weights = _probe_weights(steps, probes, targets, target)
    where = index.reshape(-1) >= 0
    word = index.reshape(-1)[where]
    count = len(words)
    cells = (np.arange(steps)[:, None] * count + word[None, :]).reshape(-1)  # [steps * occurrences]
    counted = np.repeat(weights, positions, axis=1)[:, where]
    sums = np.bincount(cells, weights=(values.reshape(steps, -1)[:, where] * counted).reshape(-1),
                       minlength=steps * count)
    numbers = np.bincount(cells, weights=counted.reshape(-1), minlength=steps * count)
    with np.errstate(invalid="ignore", divide="ignore"):
        importance = (sums / numbers).reshape(steps, count)
    return words, importance, occurrences, weights.sum(axis=1).astype(np.int64)


def importance_order(importance: np.ndarray) -> np.ndarray:
    """Feature indices sorted by ``|importance|`` at the last step that has a finite value, largest first.

    Args:
        importance: ``[steps, features]``.
    """
    values = np.asarray(importance, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"importance must be [steps, features]; received shape {values.shape}")
    finite_rows = np.flatnonzero(np.isfinite(values).any(axis=1))
    if finite_rows.size == 0:
        return np.arange(values.shape[1])
    last = np.abs(values[finite_rows[-1]])
    return np.argsort(-np.nan_to_num(last, nan=-np.inf), kind="stable")


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"rankdata ranks a 1-D array; received shape {values.shape}")
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.append(starts, values.size))
    average = starts + (sizes - 1) / 2.0 + 1.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, sizes)
    return ranks


def rank_rows(rows: np.ndarray, order=None) -> np.ndarray:
    """1-based ranks within each row of ``[B, F]``, ties sharing their average rank (each row as `rankdata`);
    `order`: an ascending argsort of the rows, when the caller has one (tied values in any order)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] == 0:
        return np.zeros(rows.shape)
    b, f = rows.shape
    # Not a stable sort: tied values all get their group's average rank, whatever their order within it.
    order = np.argsort(rows, axis=1) if order is None else order
    ordered = np.take_along_axis(rows, order, axis=1)
    new_group = np.ones((b, f), dtype=bool)
    new_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ranks = np.empty((b, f))
    # Without ties (the usual case for real-valued maps) each value's rank is its position + 1.
    ranks[np.arange(b)[:, None], order] = np.arange(1.0, f + 1.0)
    tied = ~new_group.all(axis=1)
    if tied.any():  # the rows with ties, alone: each tie group's average rank
        ranks[tied] = _tied_ranks(new_group[tied], order[tied])
    return ranks


def _tied_ranks(new_group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`rank_rows` of rows with ties: `new_group` marks, in sorted order, where a group of equal values starts."""
    b, f = order.shape
    ranks = np.empty((b, f))
    position = np.broadcast_to(np.arange(f), (b, f))
    ends_group = np.ones((b, f), dtype=bool)
    ends_group[:, :-1] = new_group[:, 1:]
    first = np.maximum.accumulate(np.where(new_group, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_group, position, f - 1)[:, ::-1], axis=1)[:, ::-1]
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays; NaN if either is constant or holds a non-finite value."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal sizes; received {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return _pearson(rankdata(a), rankdata(b))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denominator == 0:
        return float("nan")
    return float(np.clip(np.dot(x, y) / denominator, -1.0, 1.0))


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest values of a 1-D array, ties broken by the lower index."""
    if k < 1:
        raise ValueError(f"k must be at least 1; received k={k}")
    return np.argsort(-np.asarray(values, dtype=np.float64).ravel(), kind="stable")[:k]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Fraction of shared indices between the top-`k` of `a` and of `b`; NaN if either holds a non-finite value."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"top_k_overlap needs equal sizes; received {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    k = min(k, a.size)
    return np.intersect1d(top_k(a, k), top_k(b, k)).size / k


def rank_stability(importance: np.ndarray, k: int) -> dict:
    """Rank stability of a per-step importance, against the previous step and against the last step.

    Args:
        importance: ``[steps, features]`` (images: flattened maps).
        k: top-k size, clipped to the number of features.

    Returns:
        A dict of ``[steps]`` float arrays ``spearman_previous``, ``topk_previous`` (NaN at the first step),
        ``spearman_last``, ``topk_last``; and ``k``, the effective k.
    """
    values = np.asarray(importance, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"importance must be [steps, features]; received shape {values.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1; received k={k}")
    steps, features = values.shape
    k = min(k, features)
    result = {
        name: np.full(steps, np.nan)
        for name in ("spearman_previous", "topk_previous", "spearman_last", "topk_last")
    }
    result["k"] = k
    finite = np.flatnonzero(np.isfinite(values).all(axis=1))
    if not finite.size or not features:
        return result
    # Every step at once (images have thousands of features): centred ranks, whose products are multiples of
    # 1/4, so each Spearman is exact and the same as `spearman` of the two rows; top-k sets as a membership mask.
    rows = values[finite]
    ranks = rank_rows(rows, np.argsort(rows, axis=1, kind="stable"))
    ranks -= ranks.mean(axis=1, keepdims=True)
    norms = (ranks * ranks).sum(axis=1)
    top = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(top, np.argsort(-rows, axis=1, kind="stable")[:, :k], True, axis=1)

    def compare(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        denominator = np.sqrt(norms[i] * norms[j])
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(denominator == 0, np.nan, np.clip((ranks[i] * ranks[j]).sum(axis=1) / denominator, -1, 1))
        return rho, (top[i] & top[j]).sum(axis=1) / k

    position = np.full(steps, -1)
    position[finite] = np.arange(finite.size)
    later = np.flatnonzero((position[1:] >= 0) & (position[:-1] >= 0)) + 1  # steps whose previous step is finite
    result["spearman_previous"][later], result["topk_previous"][later] = compare(position[later - 1], position[later])
    if position[-1] >= 0:
        last = np.full(finite.size, position[-1])
        result["spearman_last"][finite], result["topk_last"][finite] = compare(np.arange(finite.size), last)
    return result


def method_agreement(
    importances: Mapping[str, tuple[np.ndarray, np.ndarray]], k: int
) -> list[dict]:
    """Rank agreement between methods, per pair and per step both methods hold.

    Args:
        importances: method name -> ``(steps [n], importance [n, features])``; all of one feature count.
        k: top-k size, clipped to the number of features.

    Returns:
        One dict per unordered pair, in sorted method order: ``methods`` (the two names), ``steps`` (common
        steps, ascending), ``spearman`` and ``topk`` (float arrays over those steps).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; received k={k}")
    by_step = {}
    for method, (steps, importance) in importances.items():
        importance = np.asarray(importance, dtype=np.float64)
        if importance.ndim != 2 or importance.shape[0] != len(steps):
            raise ValueError(
                f"importance of {method!r} must be [len(steps), features] = [{len(steps)}, F]; "
                f"received shape {importance.shape}"
            )
        by_step[method] = {int(s): row for s, row in zip(steps, importance)}
    pairs = []
    for first, second in itertools.combinations(sorted(by_step), 2):
        common = sorted(by_step[first].keys() & by_step[second].keys())
        pairs.append(
            {
                "methods": [first, second],
                "steps": np.array(common, dtype=np.int64),
                "spearman": np.array(
                    [spearman(by_step[first][s], by_step[second][s]) for s in common], dtype=np.float64
                ),
                "topk": np.array(
                    [top_k_overlap(by_step[first][s], by_step[second][s], k) for s in common],
                    dtype=np.float64,
                ),
            }
        )
    return pairs


def agreement_by_shape(importances: Mapping[str, tuple[np.ndarray, np.ndarray]], k: int) -> list[dict]:
    """:func:`method_agreement` within each group of methods whose maps have one shape, pairs sorted by name.

    Methods with maps of different shapes (a Grad-CAM map next to a pixel map of another size) have no
    element-wise ranking to compare, so they are never paired.

    Args:
        importances: method name -> ``(steps [n], importance [n, *map_shape])``.
        k: top-k size, clipped to each group's number of map elements.

    Returns:
        The pairs of :func:`method_agreement`, over every group, sorted by their ``methods``.

    Example:
        >>> same = (np.array([0]), np.array([[1.0, 2.0, 3.0]]))
        >>> [p["methods"] for p in agreement_by_shape({"a": same, "b": same, "c": (np.array([0]), np.ones((1, 2)))}, 1)]
        [['a', 'b']]
    """
    by_shape: dict = {}
    for method, (steps, importance) in importances.items():
        importance = np.asarray(importance)
        by_shape.setdefault(importance.shape[1:], {})[method] = (
            steps,
            importance.reshape(importance.shape[0], int(np.prod(importance.shape[1:]))),
        )
    pairs = [pair for group in by_shape.values() for pair in method_agreement(group, k)]
    return sorted(pairs, key=lambda pair: pair["methods"])
