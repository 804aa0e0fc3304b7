"""From logged attributions to answers: per-step figures, their noise floor, and findings.

Pure numpy over arrays laid out as logged. A method's history is its *maps* ``[steps, probes, features]``: each
probe's |attribution| map flattened (image channels summed, see `tb_xai.aggregate.to_maps`); the step's
*importance* is the mean map over probes, as everywhere in tb_xai.

Per step (`step_figures`, `figures`):

- ``ndcg_previous``, ``ndcg_reference``: nDCG@k of the step's importance ranking, graded by the importance of
  the previous step / of the reference step (the first logged step unless another is chosen). This is the
  attribution-drift figure of production monitors (SageMaker Clarify alarms below 0.9).
- ``spearman_previous``: Spearman rank correlation of the importance with the previous step's.
- ``ndcg_floor``, ``spearman_floor``: the noise floor from the probe set itself: the 5% quantile of nDCG@k /
  Spearman between the importance and the importance of probe sets resampled with replacement (a fixed-seed
  bootstrap). A ranking that moves less than this could have moved by the choice of probes alone.
- ``total_attribution``: the mean over probes of each probe's total |attribution|;
  ``entropy``: the mean over probes of the entropy of the probe's |attribution| shares, divided by log(features)
  (1: spread evenly, 0: all on one feature).

`findings` reads these, the predictions, and the figures the callback logged (seed and sanity figures, see
`tb_xai.quality`), and reports what changed, each event only where it beats the noise floor.

Example:
    >>> import numpy as np
    >>> ndcg_at_k(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]), k=1)  # the least relevant ranked first
    0.333...
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from tb_xai import aggregate

#: nDCG@k below this against the reference step is reported as drift (SageMaker Clarify's alarm level).
DEFAULT_DRIFT_THRESHOLD = 0.9
#: Probe sets resampled for the bootstrap noise floor, and the quantile taken as the floor.
BOOTSTRAP_SAMPLES = 200
FLOOR_QUANTILE = 0.05
#: A change in a feature's importance beats the noise when it exceeds this many standard errors.
Z = 2.0

FIGURES = ("ndcg_previous", "ndcg_reference", "spearman_previous", "ndcg_floor", "spearman_floor",
           "total_attribution", "entropy")


# ------------------------------------------------------------------------------------------------ rankings
def ndcg_at_k(reference: np.ndarray, current: np.ndarray, k: int) -> float:
    """nDCG@k of the ranking by `current`, graded by `reference`'s magnitudes.

    DCG sums ``|reference[f]| / log2(rank + 1)`` over the top-k features f of `current`; it is divided by the
    same sum for the top-k of `reference` itself. 1 when both put the same features first (in an order of equal
    relevance); NaN when either holds a non-finite value or `reference` is all zeros.

    Args:
        reference: ``[features]`` relevance (an earlier step's importance).
        current: ``[features]`` the ranking to grade.
        k: how many top features count, clipped to the number of features.
    """
    reference = np.abs(np.asarray(reference, dtype=np.float64).ravel())
    current = np.asarray(current, dtype=np.float64).ravel()
    if reference.shape != current.shape:
        raise ValueError(f"ndcg_at_k needs equal sizes; received {reference.size} and {current.size}")
    if not (np.isfinite(reference).all() and np.isfinite(current).all()):
        return float("nan")
    return float(_ndcg_rows(reference, current[None], _check_k(k))[0])


def _check_k(k) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1; received: {k!r}")
    return int(k)


def _ndcg_rows(reference: np.ndarray, rows: np.ndarray, k: int, descending=None) -> np.ndarray:
    """nDCG@k of each row's ranking (rows ``[..., F]``), graded by ``reference >= 0`` (``[F]``, or ``[..., F]``
    broadcast against the rows' leading axes: one reference per step); `descending`: the rows' stable descending
    argsort, when the caller has it. NaN for the rows whose reference is all zeros."""
    reference = np.asarray(reference, dtype=np.float64)
    k = min(k, reference.shape[-1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    # Sums over the last axis, not matrix products: each row's sum is then the same whatever the batch it is in.
    ideal = (np.sort(reference, axis=-1)[..., ::-1][..., :k] * discount).sum(axis=-1)
    top = descending[..., :k] if descending is not None else _top_k_rows(rows, k)
    reference = reference.reshape((1,) * (top.ndim - reference.ndim) + reference.shape)
    gains = np.take_along_axis(reference, top, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal == 0, np.nan, (gains * discount).sum(axis=-1) / ideal)


#: Up to this many features `_top_k_rows` sorts whole rows.
_SORT_FEATURES = 256


def _top_k_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[..., k]`` of each row's k largest values (rows ``[..., F]``), largest first, ties broken by the
    lower index (as aggregate.top_k): the first k of a stable descending sort, without sorting the whole row."""
    *lead, f = rows.shape
    rows = rows.reshape(-1, f)
    b = rows.shape[0]
    if k >= f or f <= _SORT_FEATURES:  # few features: one stable sort is faster than the selection below
        return _stable_descending(rows)[:, :k].reshape(*lead, min(k, f))
    kth = -np.partition(-rows, k - 1, axis=1)[:, k - 1:k]  # each row's k-th largest value
    above = rows > kth
    tied = rows == kth
    # Every value above the k-th is in; of those equal to it, the lowest indices fill the remaining places.
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    index = np.nonzero(chosen)[1].reshape(b, k)  # ascending within each row
    order = np.argsort(-np.take_along_axis(rows, index, axis=1), axis=1, kind="stable")
    return np.take_along_axis(index, order, axis=1).reshape(*lead, k)


def _stable_descending(rows: np.ndarray) -> np.ndarray:
    """Each row's stable descending argsort (rows ``[..., F]``, finite): ties in index order.

    An unstable sort first (several times faster): where a row holds no two equal values its order is the only
    one, and the rows that do are sorted again, stably.
    """
    negated = -rows
    order = np.argsort(negated, axis=-1)
    ordered = np.take_along_axis(negated, order, axis=-1)
    tied = (ordered[..., 1:] == ordered[..., :-1]).any(axis=-1) | ~np.isfinite(ordered[..., -1])  # NaN sorts last
    if tied.any():
        order[tied] = np.argsort(negated[tied], axis=-1, kind="stable")
    return order


#: Ranks within each row (`tb_xai.aggregate.rank_rows`: one rule for the stability view and these figures).
_rank_rows = aggregate.rank_rows


def _spearman_rows(reference: np.ndarray, rows: np.ndarray, order=None) -> np.ndarray:
    """Spearman of each row ``[..., F]`` with `reference` (``[F]``, or ``[..., F]`` broadcast against the rows'
    leading axes); NaN for a constant row (`order`: an ascending argsort of the rows, see `_rank_rows`)."""
    reference = np.asarray(reference, dtype=np.float64)
    f = rows.shape[-1]
    a = _rank_rows(reference.reshape(-1, f)).reshape(reference.shape)
    b = _rank_rows(rows.reshape(-1, f), None if order is None else order.reshape(-1, f)).reshape(rows.shape)
    a, b = a - a.mean(axis=-1, keepdims=True), b - b.mean(axis=-1, keepdims=True)
    a = a.reshape((1,) * (b.ndim - a.ndim) + a.shape)
    # Centred ranks are multiples of 1/2, so these sums are exact in any order: one value per row, batched or not.
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((b * a).sum(axis=-1) / denominator, -1.0, 1.0)


def _unit_ranks(maps: np.ndarray) -> np.ndarray:
    """Each row's ranks, centred and scaled to unit length (``[P, F]``): the dot product of two such rows is
    their Spearman. NaN rows for a row that is constant or holds a non-finite value."""
    maps = np.asarray(maps, dtype=np.float64)
    bad = ~np.isfinite(maps).all(axis=1)
    ranks = _rank_rows(np.where(np.isfinite(maps), maps, 0.0))
    ranks -= ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("pf,pf->p", ranks, ranks))
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks /= norm[:, None]
    ranks[bad | (norm == 0)] = np.nan
    return ranks


def paired_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman of each row of `a` with the same row of `b` (``[P, F]`` each): per-probe map similarity.

    NaN for a row that is constant or holds a non-finite value.

    Example:
        >>> paired_spearman(np.array([[1.0, 2.0, 3.0]]), np.array([[3.0, 2.0, 1.0]])).tolist()
        [-1.0]
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired_spearman needs two [P, F] arrays of one shape; received {a.shape} and {b.shape}")
    return _paired_unit(_unit_ranks(a), _unit_ranks(b))


def _paired_unit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman per row of two `_unit_ranks` arrays."""
    return np.clip(np.einsum("pf,pf->p", a, b), -1.0, 1.0)


def as_maps(attributions: np.ndarray, modality: str, dtype=np.float64) -> np.ndarray:
    """``[steps, probes, *attribution_shape]`` -> ``[steps, probes, features]`` |attribution| maps, float64 (or
    `dtype`; None: the attributions' own, for a caller that converts them itself, see `bootstrap_floors`)."""
    values = np.asarray(attributions)
    if values.ndim < 3:
        raise ValueError(f"attributions must be [steps, probes, *attribution_shape]; received shape {values.shape}")
    maps = aggregate.to_maps(values, values.shape[2:], modality, signed=False)
    maps = maps.reshape(values.shape[0], values.shape[1], -1)
    return maps if dtype is None else maps.astype(dtype)


# ------------------------------------------------------------------------------------------- per-step figures
def bootstrap_floor(maps: np.ndarray, k: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Dict[str, float]:
    """How far the global ranking of one step moves when the probe set is resampled with replacement.

    Args:
        maps: ``[probes, features]`` one step's maps.
        k: top-k size of the nDCG.
        samples: probe sets resampled.
        seed: the resampling seed (fixed, so the callback and the reader compute the same floor).

    Returns:
        ``ndcg_floor`` and ``spearman_floor``: the `FLOOR_QUANTILE` quantiles of nDCG@k and Spearman between the
        importance and the resampled importances (NaN with fewer than 2 probes).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2:
        raise ValueError(f"maps must be [probes, features]; received shape {maps.shape}")
    floors = bootstrap_floors([maps], k, samples, seed)
    return {name: float(values[0]) for name, values in floors.items()}


#: `bootstrap_floors` resamples this many importance values at once at most (float64: 32 MiB), and ranks this
#: many at a time (2 MiB: in cache).
_FLOOR_BLOCK = 2**22
_RANK_BLOCK = 2**18


def bootstrap_floors(
    maps, k: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Dict[str, np.ndarray]:
    """`bootstrap_floor` of many steps at once, the same values: ``ndcg_floor`` and ``spearman_floor`` ``[S]``.

    Steps with the same number of probes are resampled together (one matrix product, one sort of every resampled
    importance), in blocks of at most `_FLOOR_BLOCK` values.

    Args:
        maps: ``[steps, probes, features]``, or a sequence of ``[probes_i, features]`` (a probe subset per step);
            any float type (float32 maps are converted to float64 once, step block by step block).
        k, samples, seed: as in `bootstrap_floor`.
    """
    k = _check_k(k)
    samples, seed = int(samples), int(seed)
    if isinstance(maps, np.ndarray) and maps.ndim == 3:
        steps = maps if maps.dtype.kind == "f" else maps.astype(np.float64)
        usable = np.isfinite(steps).all(axis=(1, 2)) if steps.shape[1] >= 2 else np.zeros(len(steps), dtype=bool)
        groups = {steps.shape[1:]: np.flatnonzero(usable)}
    else:
        steps = [np.asarray(m, dtype=np.float64) for m in maps]
        groups = {}
        for i, m in enumerate(steps):
            if m.ndim != 2:
                raise ValueError(f"maps must be [probes, features] per step; received shape {m.shape} at {i}")
            if m.shape[0] >= 2 and np.isfinite(m).all():
                groups.setdefault(m.shape, []).append(i)
    out = np.full((2, len(steps)), np.nan)
    for (probes, features), index in groups.items():
        index = np.asarray(index, dtype=np.int64)
        block = max(1, _FLOOR_BLOCK // max(1, samples * features))
        for start in range(0, index.size, block):
            part = index[start:start + block]
            if isinstance(steps, np.ndarray):
                contiguous = part[-1] - part[0] + 1 == part.size
                chosen = steps[part[0]:part[-1] + 1] if contiguous else steps[part]
            else:
                chosen = np.stack([steps[i] for i in part])
            out[:, part] = _floors(chosen, k, samples, seed)
    return {"ndcg_floor": out[0], "spearman_floor": out[1]}


def _floors(maps: np.ndarray, k: int, samples: int, seed: int) -> np.ndarray:
    """``[2, S]``: `bootstrap_floor`'s nDCG and Spearman floors of ``[S, probes >= 2, features]`` finite maps."""
    steps, probes, features = maps.shape
    by_probe = np.empty((probes, steps, features))
    by_probe[...] = maps.transpose(1, 0, 2)  # one pass: float64 (if not already), probes first
    importance = by_probe.mean(axis=0)  # summed over probes in order, as maps.mean(axis=1)
    # One matrix product for every step: [samples, probes] x [probes, steps * features] -> [samples, steps, features]
    # (one BLAS call: its threads start once), then the ranking, a few steps at a time (in cache).
    resampled = _resample_counts(seed, samples, probes) @ by_probe.reshape(probes, -1)
    resampled = resampled.reshape(samples, steps, features)
    block = max(1, _RANK_BLOCK // max(1, samples * features))
    # Divided by -probes: exactly the negated importances (IEEE division is symmetric in sign), in one pass.
    return np.concatenate([_ranked_floors(importance[i:i + block], resampled[:, i:i + block] / -probes, k)
                           for i in range(0, steps, block)], axis=1)


def _ranked_floors(importance: np.ndarray, negated: np.ndarray, k: int) -> np.ndarray:
    """``[2, S]`` floors from the importance ``[S, F]`` and the negated resampled importances ``[samples, S, F]``."""
    samples, steps, features = negated.shape
    # An unstable sort of every resampled importance: a row without two equal values has only one order, so its
    # first k are the stable top k and position j holds rank `features - j`. Rows with ties are redone below.
    descending = np.argsort(negated, axis=-1)
    flat = descending.reshape(-1, features)
    row_start = np.arange(0, negated.size, features)[:, None]
    ordered = np.take(negated, flat + row_start).reshape(negated.shape)  # as take_along_axis, faster
    tied = (ordered[..., 1:] == ordered[..., :-1]).any(axis=-1)
    top = descending[..., :min(k, features)]
    reference = _rank_rows(importance)
    reference -= reference.mean(axis=-1, keepdims=True)
    # Spearman of a tie-free row: its centred ranks in sorted order are fixed, so it is one gathered dot product
    # (the products are multiples of 1/4: exact, the same value as from the ranks themselves).
    position = (features - 1 - np.arange(features)) - (features - 1) / 2.0
    step_start = (np.arange(steps) * features)[:, None]
    numerator = np.take(reference, descending + step_start) @ position
    with np.errstate(invalid="ignore", divide="ignore"):
        spearman = np.clip(numerator / np.sqrt((reference * reference).sum(axis=-1) * (position @ position)), -1, 1)
    if tied.any():
        at = np.nonzero(tied)[1]
        top = top.copy()
        if features <= _SORT_FEATURES:  # `_top_k_rows`' indices: the first k of a stable descending sort
            top[tied] = np.argsort(negated[tied], axis=-1, kind="stable")[:, :min(k, features)]
        else:
            top[tied] = _top_k_rows(-negated[tied], k)
        # Spearman with ties: each value's centred rank is its tie group's mean centred position in the sorted row
        # (whatever the order within the group), so again one gathered dot product of exact products.
        group_sorted = ordered[tied]
        t = len(group_sorted)
        starts = np.ones((t, features), dtype=bool)
        starts[:, 1:] = group_sorted[:, 1:] != group_sorted[:, :-1]
        first = np.flatnonzero(starts)
        sizes = np.diff(np.append(first, t * features))
        mean_position = (first % features) + (sizes - 1) / 2.0
        centred = ((features - 1) / 2.0 - np.repeat(mean_position, sizes)).reshape(t, features)
        gathered = np.take(reference, descending[tied] + (at * features)[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            spearman[tied] = np.clip((gathered * centred).sum(axis=-1)
                                     / np.sqrt((reference[at] * reference[at]).sum(axis=-1)
                                               * (centred * centred).sum(axis=-1)), -1.0, 1.0)
    ndcg = _ndcg_rows(importance, None, k, top)
    both = np.stack([ndcg, spearman])  # [2, samples, steps]
    floors = _low_quantile(both)
    for figure, step in zip(*np.nonzero(~np.isfinite(both).all(axis=1))):  # NaN resamples left out
        floors[figure, step] = _quantile(both[figure, :, step])
    return floors


def _low_quantile(both: np.ndarray) -> np.ndarray:
    """``np.quantile(both, FLOOR_QUANTILE, axis=1)`` (its "linear" method, the same values, NaN where a column holds
    a NaN) of ``[figures, samples, steps]``, in fewer numpy calls: from the two order statistics around the quantile,
    interpolated as numpy's `_lerp` does."""
    n = both.shape[1]
    virtual = (n - 1) * np.float64(FLOOR_QUANTILE)
    below = int(np.floor(virtual))
    above = min(below + 1, n - 1)
    gamma = virtual - below
    ordered = np.partition(both, (below, above), axis=1) if above < n - 1 else np.sort(both, axis=1)
    a, b = ordered[:, below], ordered[:, above]
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as numpy's
        diff = b - a
        value = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return np.where(np.isnan(both).any(axis=1), np.nan, value)


@functools.lru_cache(maxsize=16)
def _resample_counts(seed: int, samples: int, probes: int) -> np.ndarray:
    """``[samples, probes]`` float64 (read-only): how often each probe is drawn in each resample of the
    bootstrap, a function of its arguments alone, so computed once per probe count and seed."""
    # Counts of `probes` uniform draws (a multinomial, drawn as integers and counted with one bincount, several
    # times faster than numpy's multinomial here); float, so the resampling is a BLAS product, not an int loop.
    draws = np.random.default_rng(seed).integers(0, probes, (samples, probes))
    counts = np.bincount((draws + probes * np.arange(samples)[:, None]).ravel(), minlength=samples * probes)
    counts = counts.reshape(samples, probes).astype(np.float64)
    counts.flags.writeable = False
    return counts


def _quantile(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.quantile(values, FLOOR_QUANTILE)) if values.size else float("nan")


def concentration(maps: np.ndarray) -> Dict[str, float]:
    """``total_attribution`` and normalized ``entropy`` of one step's ``[probes, features]`` |maps|."""
    maps = np.abs(np.asarray(maps, dtype=np.float64))
    totals = maps.sum(axis=1)
    features = maps.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = maps / totals[:, None]
        terms = np.where(shares > 0, -shares * np.log(np.where(shares > 0, shares, 1.0)), 0.0)
    entropy = terms.sum(axis=1) / math.log(features) if features > 1 else np.zeros(len(maps))
    entropy = entropy[totals > 0]  # a probe with no attribution at all has no distribution
    return {"total_attribution": float(totals.mean()) if totals.size else float("nan"),
            "entropy": float(entropy.mean()) if entropy.size else float("nan")}


def step_figures(
    maps: np.ndarray,
    previous: Optional[np.ndarray],
    reference: Optional[np.ndarray],
    k: int,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    floors: Optional[Dict[str, float]] = None,
) -> Dict[str, float]:
    """The figures of one step (see the module docstring), from its maps and earlier steps' importance.

    Args:
        maps: ``[probes, features]`` |maps| of the step.
        previous: ``[features]`` importance of the previous logged step, or None.
        reference: ``[features]`` importance of the reference step, or None (not reached yet).
        k: top-k size.
        bootstrap_samples: probe sets resampled for the floor.
        floors: ``ndcg_floor`` and ``spearman_floor`` of these maps, when the caller computed them (with other
            maps', `bootstrap_floors` of many steps at once: the same values).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2:
        raise ValueError(f"maps must be [probes, features]; received shape {maps.shape}")
    out = _drift_figures(maps, previous, reference, k)
    if floors is None:
        # The 3-D path of `bootstrap_floors` (one step): the same values as `bootstrap_floor`, with less to check.
        floors = {name: float(values[0]) for name, values in bootstrap_floors(maps[None], k, bootstrap_samples).items()}
    out.update(floors)
    out.update(concentration(maps))
    return out


def _drift_figures(maps: np.ndarray, previous: Optional[np.ndarray], reference: Optional[np.ndarray], k: int) -> dict:
    """``ndcg_previous``, ``ndcg_reference``, ``spearman_previous`` of one step (see `step_figures`)."""
    importance = maps.mean(axis=0)
    nan = float("nan")
    out = {"ndcg_previous": nan, "ndcg_reference": nan,
           "spearman_previous": nan if previous is None else aggregate.spearman(previous, importance)}
    # Both nDCGs rank the same importance: its top k once, and one `_ndcg_rows` over both references (`ndcg_at_k`'s
    # values: each row's sums are over its last axis alone).
    graded = [(name, r) for name, r in (("ndcg_previous", previous), ("ndcg_reference", reference)) if r is not None]
    if graded:
        k = _check_k(k)
        relevance = np.abs(np.stack([np.asarray(r, dtype=np.float64).ravel() for _, r in graded]))
        if relevance.shape[1] != importance.size:
            raise ValueError(f"ndcg_at_k needs equal sizes; received {relevance.shape[1]} and {importance.size}")
        finite = np.isfinite(relevance).all(axis=1) & bool(np.isfinite(importance).all())
        if finite.any():
            top = _top_k_rows(importance[None], min(k, importance.size))
            values = _ndcg_rows(relevance, top, k, top)
            for (name, _), value, ok in zip(graded, values, finite):
                if ok:
                    out[name] = float(value)
    return out


def reference_index(steps: Sequence[int], reference_step: Optional[int]) -> int:
    """Position of `reference_step` in `steps` (the first step when None); ValueError naming the steps if absent."""
    steps = [int(s) for s in steps]
    if reference_step is None:
        return 0
    if reference_step not in steps:
        raise ValueError(f"reference_step={reference_step!r} is not a logged step; logged steps: {steps}")
    return steps.index(int(reference_step))


def figures(
    steps: Sequence[int],
    maps: np.ndarray,
    k: int = aggregate.DEFAULT_K,
    reference_step: Optional[int] = None,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    floors: Optional[Mapping[str, np.ndarray]] = None,
) -> Dict[str, np.ndarray]:
    """`step_figures` at every logged step of one method.

    Args:
        steps: the logged steps, ascending.
        maps: ``[steps, probes, features]`` |maps| (see `as_maps`).
        k: top-k size of the nDCG.
        reference_step: the step ``ndcg_reference`` compares with (the first logged step by default); steps
            before it compare with it too.
        bootstrap_samples: probe sets resampled per step for the floor.
        floors: ``ndcg_floor`` and ``spearman_floor`` of these maps at this k and `bootstrap_samples`, when the
            caller has them (`MethodHistory.floors`); computed here otherwise.

    Returns:
        ``steps`` (int64) and one float64 ``[steps]`` array per name in `FIGURES`.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != len(steps):
        raise ValueError(f"maps must be [len(steps), probes, features] = [{len(steps)}, P, F]; received {maps.shape}")
    out = {name: np.full(len(steps), np.nan) for name in FIGURES}
    out["steps"] = np.asarray(steps, dtype=np.int64)
    if not len(steps):
        return out
    importance = maps.mean(axis=1)
    ref = importance[reference_index(steps, reference_step)]
    # `step_figures` at each step, the noise floor of every step at once (`bootstrap_floors`: the same values).
    floors = bootstrap_floors(maps, k, bootstrap_samples) if floors is None else floors
    out.update({name: np.asarray(floors[name], dtype=np.float64) for name in ("ndcg_floor", "spearman_floor")})
    for i in range(len(steps)):
        row = _drift_figures(maps[i], importance[i - 1] if i else None, ref, k)
        row.update(concentration(maps[i]))
        for name, value in row.items():
            out[name][i] = value
    return out


def as_json(figures: Mapping[str, np.ndarray]) -> Dict[str, list]:
    """`figures` (or `Run.metrics`) as JSON-ready lists: ints for ``steps``, floats or None (not finite).

    Example:
        >>> as_json({"steps": np.array([0, 1]), "ndcg_previous": np.array([np.nan, 0.5])})
        {'steps': [0, 1], 'ndcg_previous': [None, 0.5]}
    """
    out = {}
    for name, values in figures.items():
        values = np.asarray(values)
        out[name] = [int(v) for v in values] if values.dtype.kind in "iu" else [_number(v) for v in values]
    return out


# ------------------------------------------------------------------------------------------------- findings
@dataclasses.dataclass
class MethodHistory:
    """What `findings` needs of one method.

    Attributes:
        steps: ``[S]`` logged steps, ascending.
        maps: ``[S, probes, features]`` |maps| (`as_maps`).
        names: the features' names (`tb_xai.aggregate.element_names` of the map).
        logged: figures the callback logged, name -> ``(steps, values)``; those used here are ``seed_ndcg``,
            ``seed_spearman``, ``seed_noise`` and ``sanity_spearman`` (see `tb_xai.quality`).
        inputs: ``(input name, features)`` of each input whose map is part of `maps`, in order (optional: the
            findings then name the input of a feature, and the feature's index within it).
    """

    steps: np.ndarray
    maps: np.ndarray
    names: Sequence[str]
    logged: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    inputs: Sequence[tuple] = ()
    _cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    #: Where `floors` keeps what it computed: a dict that may outlive this history (see `tb_xai.query.floors_cache`).
    floor_cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def floors(self, k: int) -> Dict[str, np.ndarray]:
        """`bootstrap_floors` at every step: ``ndcg_floor`` and ``spearman_floor`` ``[S]`` (computed once per k)."""
        key = ("floors", int(k))
        known = self.floor_cache.get(key)
        if known is None:
            known = self.floor_cache[key] = bootstrap_floors(self.maps, k)
        return known

    def unit_ranks(self) -> np.ndarray:
        """``[S, P, F]`` each step's maps as `_unit_ranks` (computed once): per-probe Spearman is a dot product."""
        if "ranks" not in self._cache:
            maps = np.asarray(self.maps, dtype=np.float64)
            # Row by row: every probe of every step at once gives each row the values it has alone.
            self._cache["ranks"] = _unit_ranks(maps.reshape(-1, maps.shape[-1])).reshape(maps.shape) \
                if maps.size else maps
        return self._cache["ranks"]

    def locate(self, index: int) -> tuple:
        """``(input name, index within that input's map)`` of a feature index of the concatenated maps; the
        input is None when `inputs` was not given."""
        start = 0
        for name, size in self.inputs:
            if index < start + size:
                return name, int(index - start)
            start += size
        return None, int(index)

    def logged_at(self, name: str, fill: bool = False) -> np.ndarray:
        """The logged figure `name` at `steps` (`logged_at`)."""
        return logged_at(self.logged.get(name), self.steps, fill)


def logged_at(series: Optional[tuple], steps: Sequence[int], fill: bool = False) -> np.ndarray:
    """A logged figure's ``(steps, values)`` at `steps`: NaN where it was not logged, or, with `fill`, the latest
    earlier value (the first one before it was first logged), as for seed figures logged every few steps.

    Example:
        >>> logged_at((np.array([1, 3]), np.array([0.5, 0.7])), [0, 1, 2, 3], fill=True).tolist()
        [0.5, 0.5, 0.5, 0.7]
    """
    out = np.full(len(steps), np.nan)
    if series is not None:
        by_step = {int(s): float(v) for s, v in zip(*series)}
        out[:] = [by_step.get(int(s), np.nan) for s in steps]
    known = np.flatnonzero(np.isfinite(out))
    if fill and known.size:
        latest = np.maximum.accumulate(np.where(np.isfinite(out), np.arange(len(out)), -1))
        out = out[np.where(latest >= 0, latest, known[0])]
    return out


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What counts as a finding (every event must also beat its noise floor).

    Attributes:
        k: top-k size for entering/leaving features and nDCG.
        drift: nDCG@k against the reference below this is drift.
        explanation_change: a probe's explanation changed when the Spearman of its |map| with the previous
            step's falls below this.
        explanation_stable: ... and stayed when it is at least this.
        agreement: two methods agree while the Spearman of their importances is at least this.
        sanity: a method fails the sanity check while its maps' similarity to a randomized model's stays
            above this through the last step.
        patience: a new state (in the top-k, out of it, a flipped prediction, disagreeing methods) must hold
            for this many logged steps, or to the last step, to be reported.
    """

    k: int = aggregate.DEFAULT_K
    drift: float = DEFAULT_DRIFT_THRESHOLD
    explanation_change: float = 0.5
    explanation_stable: float = 0.9
    agreement: float = 0.5
    sanity: float = 0.7
    patience: int = 3

    def __post_init__(self):
        _check_k(self.k)
        for name in ("drift", "explanation_change", "explanation_stable", "agreement", "sanity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} threshold must be a number in [-1, 1]; received: {value!r}")
        if not isinstance(self.patience, (int, np.integer)) or isinstance(self.patience, bool) or self.patience < 1:
            raise ValueError(f"patience must be an integer >= 1; received: {self.patience!r}")


def _holds(flags: np.ndarray, start: int, patience: int) -> bool:
    """Whether `flags` is True from `start` for `patience` positions (or to the end)."""
    return bool(np.all(flags[start:start + patience]))


def _finding(step, kind, message, method=None, feature=None, probe=None, value=None, noise=None, **extra) -> dict:
    out = {"step": int(step), "kind": kind, "method": method, "input": None, "feature": feature,
           "feature_index": None, "probe": probe, "value": _number(value), "noise": _number(noise),
           "message": message}
    out.update(extra)
    return out


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _seed_noise(history: MethodHistory) -> np.ndarray:
    noise = history.logged_at("seed_noise", fill=True)
    return np.where(np.isfinite(noise), noise, 0.0)


def topk_findings(method: str, history: MethodHistory, t: Thresholds) -> List[dict]:
    """Features entering or leaving the top-k and staying there, by more than the noise.

    The noise of a feature's change between two steps is `Z` paired standard errors over probes (the same
    probes at both steps), combined with the between-seed noise the callback logged for sampling methods. A
    feature counts only when its own importance moved by more than that, in the direction of its move: one
    pushed out of the top-k by another's rise, its own importance unchanged, is not a finding of its own.
    """
    maps, steps = history.maps, history.steps
    if len(steps) < 2:
        return []
    importance = maps.mean(axis=1)
    k = min(t.k, importance.shape[1])
    inside = np.zeros(importance.shape, dtype=bool)
    for i, row in enumerate(importance):
        inside[i, aggregate.top_k(row, k)] = True
    seed = _seed_noise(history)
    out = []
    probes = maps.shape[1]
    for i in range(1, len(steps)):
        changed = np.flatnonzero(inside[i] != inside[i - 1])
        if not changed.size:
            continue
        diff = maps[i] - maps[i - 1]
        se = diff.std(axis=0, ddof=1) / math.sqrt(probes) if probes > 1 else np.zeros(diff.shape[1])
        for f in changed:
            entered = bool(inside[i, f])
            if not _holds(inside[:, f] == entered, i, t.patience):
                continue
            value = importance[i, f] - importance[i - 1, f]
            noise = Z * math.sqrt(se[f] ** 2 + seed[i] ** 2 + seed[i - 1] ** 2)
            if abs(value) <= noise or (value > 0) != entered:
                continue
            verb = "entered" if entered else "left"
            input_name, index = history.locate(int(f))
            out.append(_finding(
                steps[i], "topk_enter" if entered else "topk_leave",
                f"step {int(steps[i])}: {history.names[f]} {verb} the top {k} of {method} "
                f"({value:+.3g} mean |attribution|, noise {noise:.2g})",
                method=method, feature=history.names[f], value=value, noise=noise, input=input_name,
                feature_index=index))
    return out


def drift_findings(method: str, history: MethodHistory, t: Thresholds, reference_step: Optional[int]) -> List[dict]:
    """The step from which the ranking stays drifted from the reference: nDCG@k below the threshold and the floor."""
    steps = history.steps
    if len(steps) < 2:
        return []
    ref = reference_index(steps, reference_step)
    importance = history.maps.mean(axis=1)
    floors = history.floors(t.k)["ndcg_floor"]
    seed_floor = history.logged_at("seed_ndcg", fill=True)
    ndcg = np.array([ndcg_at_k(importance[ref], row, t.k) for row in importance])
    # The lowest nDCG the estimator's own randomness allows at either end of the comparison.
    floor = np.fmin(np.fmin(floors, floors[ref]), np.fmin(seed_floor, seed_floor[ref]))
    drifted = (ndcg < t.drift) & (ndcg < np.where(np.isfinite(floor), floor, 1.0))
    drifted[: ref + 1] = False
    for i in range(ref + 1, len(steps)):
        if drifted[i] and not drifted[i - 1] and _holds(drifted, i, t.patience):
            noise = 1.0 - floor[i] if np.isfinite(floor[i]) else None
            return [_finding(
                steps[i], "drift",
                f"step {int(steps[i])}: the ranking of {method} drifted from step {int(steps[ref])} "
                f"(nDCG@{min(t.k, importance.shape[1])} {ndcg[i]:.2f} < {t.drift:g}, noise floor "
                f"{floor[i]:.2f})", method=method, value=ndcg[i], noise=noise,
                reference_step=int(steps[ref]))]
    return []


def is_regression(predictions) -> bool:
    """One output unit with values outside [0, 1]: a regression, whose value has no class to flip."""
    values = np.asarray(predictions, dtype=np.float64)
    return values.ndim == 3 and values.shape[2] == 1 and bool(((values < 0) | (values > 1)).any())


def predicted_classes(predictions: np.ndarray) -> np.ndarray:
    """``[steps, probes]`` predicted class of ``[steps, probes, outputs]`` predictions (one unit: above 0.5)."""
    predictions = np.asarray(predictions)
    if predictions.ndim != 3:
        raise ValueError(f"predictions must be [steps, probes, outputs]; received shape {predictions.shape}")
    if predictions.shape[2] == 1:  # one sigmoid unit: class 1 above 0.5
        return (predictions[..., 0] > 0.5).astype(np.int64)
    return predictions.argmax(axis=2)


def label_classes(labels: Optional[np.ndarray], probes: int) -> Optional[np.ndarray]:
    """``[probes]`` class index of each label (indices or one-hot); None for no labels, regression targets,
    strings or another probe count."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(len(labels), -1)[:, 0] if labels.ndim > 1 else labels
    if labels.shape != (probes,) or labels.dtype.kind not in "iub":
        return None  # regression targets or another probe set: no right or wrong
    return labels.astype(np.int64)


def flip_findings(pred_steps, predictions, labels=None, class_names=None, patience: int = 3) -> List[dict]:
    """Probes whose predicted class changes and keeps the new class for `patience` steps (or to the end)."""
    pred_steps = np.asarray(pred_steps, dtype=np.int64)
    if is_regression(predictions):
        return []
    predicted = predicted_classes(predictions)
    truth = label_classes(labels, predicted.shape[1])
    names = list(class_names or [])
    out = []

    def name(c):
        return repr(names[c]) if 0 <= c < len(names) else f"class {c}"

    for i in range(1, len(pred_steps)):
        for p in np.flatnonzero(predicted[i] != predicted[i - 1]):
            new, old = int(predicted[i, p]), int(predicted[i - 1, p])
            if not _holds(predicted[:, p] == new, i, patience):
                continue
            if truth is not None and (new == truth[p]) != (old == truth[p]):
                direction = "wrong_to_right" if new == truth[p] else "right_to_wrong"
            else:
                direction = "changed"
            words = {"wrong_to_right": "now right", "right_to_wrong": "now wrong", "changed": ""}[direction]
            confidence = np.asarray(predictions)[i, p, new] if np.asarray(predictions).shape[2] > 1 else None
            out.append(_finding(
                pred_steps[i], "prediction_flip",
                f"step {int(pred_steps[i])}: probe {int(p)}'s prediction flipped from {name(old)} to "
                f"{name(new)}" + (f" ({words})" if words else ""),
                probe=int(p), value=confidence, noise=0.0, direction=direction,
                previous_class=old, predicted_class=new))
    return out


def probe_change_findings(
    method: str, history: MethodHistory, pred_steps, predictions, t: Thresholds
) -> List[dict]:
    """A probe's explanation changes while its prediction does not, or its prediction flips while its map stays.

    A probe's change at step i is the Spearman of its |map| with step i-1's. It counts as changed when that
    stays below `Thresholds.explanation_change` for `patience` steps (the map moved and did not come back)
    while the predicted class stays; for sampling methods also only below the between-seed agreement the
    callback logged (``seed_spearman``): two seeds of the same model disagree that much already. A flip counts
    when the new class holds for `patience` steps and the map's Spearman with step i-1 is at least
    `Thresholds.explanation_stable`.
    """
    steps = history.steps
    if is_regression(predictions):  # no class to keep or flip
        return []
    by_step = {int(s): i for i, s in enumerate(np.asarray(pred_steps))}
    rows = [by_step.get(int(s)) for s in steps]
    predicted = predicted_classes(predictions)
    seed_floor = history.logged_at("seed_spearman", fill=True)
    out = []
    for i in range(1, len(steps)):
        ahead = list(range(i, min(len(steps), i + t.patience)))
        if any(rows[j] is None for j in [i - 1] + ahead):
            continue
        floor = seed_floor[i] if np.isfinite(seed_floor[i]) else 1.0
        noise = 1.0 - floor
        # Spearman of each probe's map at i-1 with its maps at i, i+1, ... (patience steps).
        ranks = history.unit_ranks()
        later = np.stack([_paired_unit(ranks[i - 1], ranks[j]) for j in ahead])
        classes = predicted[[rows[j] for j in [i - 1] + ahead]]  # [1 + len(ahead), probes]
        rho = later[0]
        known = np.isfinite(rho)
        kept = (classes == classes[0]).all(axis=0)
        flipped = (classes[1] != classes[0]) & (classes[1:] == classes[1]).all(axis=0)
        with np.errstate(invalid="ignore"):
            changed = known & kept & (later < min(t.explanation_change, floor)).all(axis=0)
            stayed = known & ~changed & flipped & (rho >= t.explanation_stable)
        for p in np.flatnonzero(changed | stayed).tolist():
            if changed[p]:
                out.append(_finding(
                    steps[i], "explanation_changed",
                    f"step {int(steps[i])}: probe {p}'s {method} explanation changed (Spearman {rho[p]:.2f} with "
                    f"step {int(steps[i - 1])}) while its prediction did not", method=method, probe=p,
                    value=rho[p], noise=noise))
            else:
                out.append(_finding(
                    steps[i], "prediction_flipped_explanation_stable",
                    f"step {int(steps[i])}: probe {p}'s prediction flipped while its {method} explanation stayed "
                    f"(Spearman {rho[p]:.2f} with step {int(steps[i - 1])})", method=method, probe=p,
                    value=rho[p], noise=noise))
    return out


def sanity_findings(method: str, history: MethodHistory, t: Thresholds) -> List[dict]:
    """A method whose maps stay close to a randomized model's (Adebayo et al., 2018) to the last step."""
    similarity = history.logged_at("sanity_spearman")
    known = np.flatnonzero(np.isfinite(similarity))
    if known.size < 2:  # one step says nothing about staying
        return []
    above = similarity[known] > t.sanity
    if not above[-1]:
        return []
    start = len(above) - int(np.argmin(above[::-1])) if not above.all() else 0
    if len(above) - start < min(t.patience, len(above)):
        return []
    i = known[start]
    last = similarity[known[-1]]
    return [_finding(
        history.steps[i], "sanity_failed",
        f"step {int(history.steps[i])}: {method}'s maps stay close to a randomized model's (Spearman "
        f"{last:.2f} > {t.sanity:g} at the last step): they may not explain what the model learned",
        method=method, value=last, noise=None)]


def agreement_findings(histories: Mapping[str, MethodHistory], t: Thresholds) -> List[dict]:
    """Two methods whose importance rankings agreed, then stop agreeing by more than their noise floors."""
    importances = {m: (h.steps, h.maps.mean(axis=1)) for m, h in histories.items()}
    floors = {m: dict(zip(h.steps.tolist(), h.floors(t.k)["spearman_floor"])) for m, h in histories.items()}
    out = []
    for pair in aggregate.agreement_by_shape(importances, t.k):
        first, second = pair["methods"]
        rho, steps = pair["spearman"], pair["steps"]
        agree = rho >= t.agreement
        for i in range(1, len(steps)):
            if not (agree[i - 1] and not agree[i] and np.isfinite(rho[i])):
                continue
            if not _holds(~agree & np.isfinite(rho), i, t.patience):
                continue
            noise = sum(1.0 - floors[m].get(int(steps[i]), np.nan) for m in (first, second))
            drop = rho[i - 1] - rho[i]
            if np.isfinite(noise) and drop <= noise:
                continue
            out.append(_finding(
                steps[i], "methods_disagree",
                f"step {int(steps[i])}: {first} and {second} stopped agreeing (Spearman {rho[i - 1]:.2f} -> "
                f"{rho[i]:.2f}, noise {noise:.2f})", method=f"{first},{second}", value=rho[i],
                noise=noise if np.isfinite(noise) else None, methods=[first, second]))
    return out


#: Every kind of finding, in the order findings of one step are listed.
KINDS = ("drift", "topk_enter", "topk_leave", "sanity_failed", "methods_disagree", "prediction_flip",
         "explanation_changed", "prediction_flipped_explanation_stable")


def findings(
    histories: Mapping[str, MethodHistory],
    pred_steps: Optional[Sequence[int]] = None,
    predictions: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    class_names: Optional[Sequence[str]] = None,
    *,
    thresholds: Thresholds = Thresholds(),
    reference_step: Optional[int] = None,
) -> List[dict]:
    """Every finding of a run, ordered by step (then kind, method, feature or probe).

    Args:
        histories: method -> its `MethodHistory`.
        pred_steps: ``[S']`` steps of the predictions.
        predictions: ``[S', probes, outputs]`` of the explained head, or None.
        labels: the probes' labels (class indices or one-hot), or None.
        class_names: names of the explained head's classes.
        thresholds: what counts (`Thresholds`).
        reference_step: the step drift is measured from (the first logged step of each method by default).

    Returns:
        JSON-ready dicts with ``step``, ``kind``, ``method``, ``input``, ``feature``, ``feature_index``,
        ``probe``, ``value``, ``noise`` and ``message`` (None where a key does not apply), plus kind-specific
        keys. ``input`` is the feature's input, or the only input of the method(s) a finding is about;
        ``feature_index`` the feature's flat index within that input's map.
    """
    out: List[dict] = []
    for method, history in sorted(histories.items()):
        ref = reference_step if reference_step is None or reference_step in set(history.steps.tolist()) else None
        if reference_step is not None and ref is None:
            raise ValueError(f"reference_step={reference_step!r} is not a logged step of {method!r}; "
                             f"logged steps: {history.steps.tolist()}")
        out += topk_findings(method, history, thresholds)
        out += drift_findings(method, history, thresholds, ref)
        out += sanity_findings(method, history, thresholds)
        if predictions is not None and pred_steps is not None:
            out += probe_change_findings(method, history, pred_steps, predictions, thresholds)
    out += agreement_findings(histories, thresholds)
    if predictions is not None and pred_steps is not None:
        out += flip_findings(pred_steps, predictions, labels, class_names, thresholds.patience)
    for finding in out:
        if finding["input"] is None and finding["method"] is not None:
            explained = {name for m in finding.get("methods") or [finding["method"]]
                         for name, _ in histories[m].inputs}
            finding["input"] = next(iter(explained)) if len(explained) == 1 else None
    return sorted(out, key=lambda f: (f["step"], KINDS.index(f["kind"]), f["method"] or "",
                                      f["feature"] or "", -1 if f["probe"] is None else f["probe"]))
