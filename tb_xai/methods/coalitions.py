"""Sampling the perturbations local surrogate methods fit: coalitions of interpretable features, Gaussian rows.

Every draw for a probe comes from a generator seeded with (seed, a checksum of the probe's values), so a probe
gets the same perturbations at every logged step, whatever batch or position it is computed in.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.special import comb

from tb_xai.methods.base import check_positive_int

def probe_key(row: np.ndarray) -> int:
    """A checksum of one probe's values: what seeds its random draws.

    Keying the draws on the probe's content, not its position, makes a probe's attribution the same at every
    step, for any batch size, alone or among other probes, in any order.
    """
    return zlib.crc32(np.ascontiguousarray(row).tobytes())


def probe_keys(rows: np.ndarray) -> np.ndarray:
    return np.array([probe_key(row) for row in rows], dtype=np.int64)


def joint_probe_keys(inputs) -> np.ndarray:
    """`probe_keys` of probes made of several input arrays (a multi-input model's): one checksum over all
    of a probe's inputs, equal to `probe_keys(inputs[0])` for a single input."""
    keys = np.zeros(len(inputs[0]), dtype=np.int64)
    for array in inputs:
        keys = np.array([zlib.crc32(np.ascontiguousarray(row).tobytes(), int(k)) for row, k in zip(array, keys)],
                        dtype=np.int64)
    return keys


def probe_generator(seed: int, *keys: int) -> np.random.Generator:
    """The random generator of the probe with key `keys` (see `probe_key`)."""
    return np.random.default_rng([int(seed)] + [int(k) for k in keys])


def shapley_budget(features: int, samples) -> int:
    """Coalitions to evaluate: `samples` ("auto" = 2K + 2048), at most all 2^K - 2 proper non-empty ones."""
    if samples == "auto":
        samples = 2 * features + 2048
    else:
        check_positive_int(samples, "samples", alternative="'auto'")
    if features < 62:
        samples = min(int(samples), 2 ** features - 2)
    return max(int(samples), 0)


def shapley_kernel_mass(features: int) -> np.ndarray:
    """Total Shapley-kernel weight of the coalitions of each size s = 1..K-1 (index s - 1): (K-1)/(s(K-s))."""
    sizes = np.arange(1, features)
    return (features - 1) / (sizes * (features - sizes))


@functools.lru_cache(maxsize=32)
def _enumerated(features: int, budget: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coalition sizes cheap enough to list completely, smallest and largest first.

    Returns (masks, weights, sizes still to sample); shared by every probe with `features` features.
    """
    mass = shapley_kernel_mass(features)
    open_sizes = list(range(1, features))
    masks, weights = [], []
    left = budget
    for small in range(1, features // 2 + 1):
        pair = sorted({small, features - small})
        count = sum(comb(features, s, exact=True) for s in pair)
        share = sum(mass[s - 1] for s in pair) / sum(mass[s - 1] for s in open_sizes)
        if left * share < count - 1e-8:
            break
        for size in pair:
            per = mass[size - 1] / comb(features, size, exact=True)
            for members in itertools.combinations(range(features), size):
                row = np.zeros(features, dtype=bool)
                row[list(members)] = True
                masks.append(row)
                weights.append(per)
            open_sizes.remove(size)
        left -= count
    masks = np.array(masks, dtype=bool).reshape(-1, features)
    return masks, np.array(weights, dtype=np.float64), np.array(open_sizes, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class CoalitionDesign:
    """The coalitions KernelSHAP evaluates for one probe, one set per background row.

    Row r's coalitions are the base coalitions with their features relabelled: feature i of row r is in
    coalition s when `base[s, relabel[r, i]]`.

    Attributes:
        base: (S, K) bool: the listed coalitions (complete sizes, `listed` of them), then the sampled
            coalitions of `pairs` complement pairs, then their complements in the same order.
        relabel: (rows, K) int: each row's permutation of the features.
        weights: (S,) regression weights, the same for every row.
        listed: how many coalitions lead, listed from complete sizes.
        pair_class: (pairs,) the size class min(s, K - s) of each sampled pair.
        class_share: {size class: the share of its complement pairs one row samples}.
    """

    base: np.ndarray
    relabel: np.ndarray
    weights: np.ndarray
    listed: int
    pair_class: np.ndarray
    class_share: Dict[int, float]

    @property
    def pairs(self) -> int:
        return len(self.pair_class)

    @property
    def masks(self) -> np.ndarray:
        """(rows, S, K) bool: each row's coalitions."""
        out = np.empty((len(self.relabel),) + self.base.shape, dtype=bool)
        self.write_masks(out)
        return out

    def write_masks(self, out: np.ndarray) -> None:
        """Writes `masks` into `out` (rows, S, K), row by row (a column gather each)."""
        for row, relabel in enumerate(self.relabel):
            np.take(self.base, relabel, axis=1, out=out[row])


def shapley_coalitions(features: int, samples, rng: np.random.Generator, rows: int = 1) -> CoalitionDesign:
    """Coalitions and their regression weights for KernelSHAP on `features` interpretable features.

    Coalition sizes whose every member fits in the budget (in proportion to their kernel weight) are listed
    completely with their exact Shapley-kernel weights. The rest of the budget is drawn as complement pairs
    (a coalition and the one holding the other features; Covert & Lee, 2021: with the efficiency
    constraint the pair's errors cancel to first order) by leverage scores (Musco & Witter, 2025): the
    leverage scores of the Shapley regression give every size the same total, so each open pair of sizes
    {s, K - s} gets an equal share of the pairs, drawn without replacement within the size (a coalition
    is never evaluated twice for one row), and each carries an equal part of its size's kernel weight.

    Each of `rows` background rows gets its own coalitions: the drawn ones with the features relabelled by a
    random permutation per row (a uniform design again, as cheap as a column gather). A probe's attribution is
    the mean over background rows of each row's Shapley values, so per-row errors that are independent
    average out, where coalitions shared by every row leave the rows' common error in full. With a budget of
    2^K - 2 every coalition is listed and the regression returns the exact Shapley values.
    """
    budget = shapley_budget(features, samples)
    listed, weights, open_sizes = _enumerated(features, budget)
    left = budget - len(listed)
    firsts, parts_w, classes_of, share = [], [], [], {}
    if left >= 2 and len(open_sizes):
        mass = shapley_kernel_mass(features)
        classes = sorted({int(min(s, features - s)) for s in open_sizes})
        # Distinct complement pairs a class holds: a middle size (s = K - s) pairs its coalitions among themselves.
        capacity = [comb(features, s, exact=True) // (2 if 2 * s == features else 1) for s in classes]
        shares = _equal_shares(left // 2, capacity)
        drawn = _sparse_subsets(features, [(s, k) for s, k in zip(classes, shares) if k], rng)
        if drawn is not None:
            firsts.append(drawn)
        for s, k, cap in zip(classes, shares, capacity):
            if k == 0:
                continue
            if drawn is None:
                firsts.append(_distinct_subsets(features, s, k, rng, canonical=2 * s == features))
            # Each size's kernel weight shared equally by its coalitions here (its exact weights when complete).
            parts_w.append(np.full(k, mass[s - 1] / (2 * k if 2 * s == features else k)))
            classes_of.append(np.full(k, s, dtype=np.int64))
            share[s] = k / cap
    first = np.concatenate(firsts) if firsts else np.zeros((0, features), dtype=bool)
    sampled_w = np.concatenate(parts_w) if parts_w else np.zeros(0)
    base = np.concatenate([listed, first, ~first])
    relabel = np.argsort(rng.random((rows, features)), axis=1) if rows > 1 else np.arange(features)[None]
    return CoalitionDesign(base, relabel, np.concatenate([weights, sampled_w, sampled_w]), len(listed),
                           np.concatenate(classes_of) if classes_of else np.zeros(0, dtype=np.int64), share)


def _equal_shares(total: int, capacity) -> list:
    """`total` split as equally as possible over bins holding at most `capacity` each."""
    shares = [0] * len(capacity)
    open_bins = [i for i, c in enumerate(capacity) if c > 0]
    while total > 0 and open_bins:
        each = max(1, total // len(open_bins))
        for i in list(open_bins):
            give = min(each, capacity[i] - shares[i], total)
            shares[i] += give
            total -= give
            if shares[i] == capacity[i]:
                open_bins.remove(i)
            if total == 0:
                break
    return shares


def _sparse_subsets(features: int, wanted, rng: np.random.Generator) -> Optional[np.ndarray]:
    """`_distinct_subsets` of every (size, count) in `wanted`, in turn, concatenated, with the same draws from
    `rng`, in a few numpy calls for all sizes at once: where every size is sparse (`_distinct_subsets` draws
    2 x count keys once and keeps the first `count` distinct subsets) and each size's first draw holds enough
    distinct ones. Else None, `rng` as it was (the sizes are then drawn one by one)."""
    if not wanted or features > 48:  # a size class's index goes above the subsets' codes (48 bits at most)
        return None
    sizes = np.array([s for s, _ in wanted], dtype=np.int64)
    counts = np.array([k for _, k in wanted], dtype=np.int64)
    totals = np.array([comb(features, int(s), exact=True) // (2 if 2 * s == features else 1) for s in sizes])
    if np.any(counts * 2 > totals):  # a dense size lists its subsets: drawn one by one
        return None
    state = rng.bit_generator.state
    rows = 2 * counts
    keys = rng.random((int(rows.sum()), features))
    row_class = np.repeat(np.arange(len(sizes)), rows)
    # The size-th smallest key of each row (what np.partition finds), then the same comparison.
    threshold = np.take_along_axis(np.sort(keys, axis=1), (sizes[row_class] - 1)[:, None], axis=1)
    drawn = keys <= threshold
    canonical = (2 * sizes == features)[row_class]
    if canonical.any():  # the member of each pair that holds feature 0
        flip = canonical & ~drawn[:, 0]
        drawn[flip] = ~drawn[flip]
    codes = _row_codes(drawn) | (row_class.astype(np.uint64) << np.uint64(48))
    _, first = np.unique(codes, return_index=True)
    first = np.sort(first)  # each size's first occurrences, in draw order, sizes in turn
    cls = row_class[first]
    rank = np.arange(len(first)) - np.searchsorted(cls, cls)
    if np.any(np.bincount(cls, minlength=len(sizes)) < counts):
        rng.bit_generator.state = state
        return None
    return drawn[first[rank < counts[cls]]]


def _distinct_subsets(features: int, size: int, count: int, rng: np.random.Generator,
                      canonical: bool) -> np.ndarray:
    """`count` distinct uniform subsets of `size` features, (count, K) bool, in draw order.

    With `canonical`, a subset and its complement count as the same (a middle size's complement pairs).
    """
    total = comb(features, size, exact=True) // (2 if canonical else 1)
    if count * 2 > total:  # dense: list them and choose without replacement
        listed = []
        for members in itertools.combinations(range(features), size):
            if canonical and 0 not in members:
                continue
            row = np.zeros(features, dtype=bool)
            row[list(members)] = True
            listed.append(row)
        return np.array(listed)[rng.choice(len(listed), size=count, replace=False)]
    kept = np.zeros((0, features), dtype=bool)
    while len(kept) < count:
        keys = rng.random((2 * (count - len(kept)), features))
        drawn = keys <= np.partition(keys, size - 1, axis=1)[:, size - 1:size]  # the `size` smallest keys
        if canonical:  # the member of each pair that holds feature 0
            drawn = np.where(drawn[:, :1], drawn, ~drawn)
        both = np.concatenate([kept, drawn])
        _, first = np.unique(_row_codes(both), return_index=True)
        kept = both[np.sort(first)][:count]
    return kept


def _row_codes(rows: np.ndarray) -> np.ndarray:
    """(n,) one code per row of an (n, K) bool array, equal exactly when the rows are: a 1-D array that
    np.unique sorts many times faster than the rows themselves (axis=0)."""
    packed = np.packbits(rows, axis=1)
    width = packed.shape[1]
    if width <= 8:
        padded = np.zeros((len(rows), 8), dtype=np.uint8)
        padded[:, :width] = packed
        return padded.view(np.uint64)[:, 0]
    return np.ascontiguousarray(packed).view(np.dtype((np.void, width)))[:, 0]


def determining_budget(features: int) -> int:
    """The fewest sampled coalitions that can determine `features` Shapley values under the efficiency
    constraint: K - 1 independent equations, and a complement pair gives one."""
    return 2 * (features - 1)


def uniform_coalitions(features: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """LIME's image perturbations: row 0 keeps every feature, the others keep each with probability 1/2."""
    masks = rng.random((samples, features)) < 0.5
    masks[0] = True
    return masks


def standard_normal(rng: np.random.Generator, shape: Tuple[int, ...]) -> np.ndarray:
    """float32 standard normal draws by the Box-Muller transform (twice as fast as numpy's ziggurat here)."""
    n = int(np.prod(shape))
    half = (n + 1) // 2
    u = rng.random((2, half), dtype=np.float32)
    radius = np.sqrt(-2.0 * np.log1p(-u[0]))
    angle = np.float32(2 * np.pi) * u[1]
    out = np.empty(2 * half, dtype=np.float32)
    np.multiply(radius, np.cos(angle), out=out[:half])
    np.multiply(radius, np.sin(angle), out=out[half:])
    return out[:n].reshape(shape)
