"""Sampling the perturbations local surrogate methods fit: coalitions of interpretable features, Gaussian rows.

Every draw for a probe comes from a generator seeded with (seed, a checksum of the probe's values), so a probe
gets the same perturbations at every logged step, whatever batch or position it is computed in.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from typing import Tuple

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


def shapley_coalitions(features: int, samples, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Coalitions and their regression weights for KernelSHAP on `features` interpretable features.

    Coalition sizes whose every member fits in the budget (in proportion to their kernel weight) are listed
    completely with their exact Shapley-kernel weights; the rest of the budget is drawn as antithetic pairs
    (a coalition and its complement) with sizes drawn in proportion to their kernel weight, each draw
    carrying an equal share of the weight those sizes hold. With a budget of 2^K - 2 every coalition is
    listed and the regression returns the exact Shapley values of the value function.

    Returns:
        (masks (S, K) bool, weights (S,) float64); the empty and full coalitions are not included.
    """
    budget = shapley_budget(features, samples)
    masks, weights, open_sizes = _enumerated(features, budget)
    drawn = budget - len(masks)
    if drawn <= 0 or len(open_sizes) == 0:
        return masks, weights
    mass = shapley_kernel_mass(features)[open_sizes - 1]
    pairs = (drawn + 1) // 2
    sizes = rng.choice(open_sizes, size=pairs, p=mass / mass.sum())
    ranks = np.argsort(rng.random((pairs, features)), axis=1).argsort(axis=1)
    chosen = ranks < sizes[:, None]
    sampled = np.stack([chosen, ~chosen], axis=1).reshape(2 * pairs, features)[:drawn]
    sampled_weights = np.full(drawn, mass.sum() / drawn)
    return np.concatenate([masks, sampled]), np.concatenate([weights, sampled_weights])


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
