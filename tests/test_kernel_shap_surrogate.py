"""KernelSHAP's kernel-ridge surrogates (`_surrogate_regression`, `_nystrom_surrogate_regression`) against
straightforward computations of the same quantities: the product-kernel games' Shapley values by enumerating
coalitions, and the fits and their jackknife variances from explicit inverses and hat matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tb_xai.methods import kernel_shap
from tb_xai.methods.coalitions import shapley_coalitions
from tb_xai.methods.kernel_shap import (
    _coalition_kernel_shapley, _gaussian_gram, _gaussian_kernel, _nystrom_surrogate_regression,
    _product_kernel_shapley, _regressions, _regressions_and_map, _surrogate_regression,
)


def _shapley_by_enumeration(game, d: int) -> np.ndarray:
    """(d, ...): the Shapley values of `game` (bool masks (2^d, d) -> values (2^d, ...)), coalition by coalition."""
    codes = np.arange(2 ** d)
    masks = (codes[:, None] >> np.arange(d)) & 1 == 1
    values = game(masks)
    out = np.zeros((d,) + values.shape[1:])
    for code in codes:
        size = int(masks[code].sum())
        for i in np.flatnonzero(~masks[code]):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            out[i] += weight * (values[code | (1 << i)] - values[code])
    return out


def _kernel(a, b, length):
    return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=2) / (2 * length ** 2))


def test_the_gaussian_kernel_and_gram():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 7)), rng.normal(size=(40, 7))
    np.testing.assert_allclose(_gaussian_kernel(a, b, 1.3), _kernel(a, b, 1.3), rtol=1e-12, atol=1e-14)
    out = np.full((300, 300), np.nan)
    gram = _gaussian_gram(a, 1.3, out, block=64)  # several row blocks; below the diagonal is not written
    assert gram is out
    upper = np.triu_indices(300)
    np.testing.assert_allclose(gram[upper], _kernel(a, a, 1.3)[upper], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("d, rows", [(5, 3), (8, 4)])
def test_the_coalition_kernel_games_shapley_values_by_enumeration(d, rows, monkeypatch):
    rng = np.random.default_rng(d)
    probe, background = rng.normal(size=d), rng.normal(size=(rows, d))
    weights = rng.random(rows) + 0.2
    weights[1] = 0.0  # a row without weight counts for nothing
    weights /= weights.sum()
    # Centres that are model rows: random coalitions of every row, the background rows and the probe.
    masks = np.concatenate([rng.random((5 * rows, d)) < 0.5, np.zeros((rows, d), bool), np.ones((1, d), bool)])
    owners = np.concatenate([rng.integers(0, rows, 5 * rows), np.arange(rows), [0]])
    centres = np.where(masks, probe, background[owners])
    length = 0.9 * np.sqrt(d)

    def game(coalitions):  # (2^d, d) -> (2^d, centres): the weighted rows' kernel games
        return sum(w * _kernel(np.where(coalitions, probe, row), centres, length)
                   for w, row in zip(weights, background))

    expected = _shapley_by_enumeration(game, d)
    np.testing.assert_allclose(_coalition_kernel_shapley(masks, owners, probe, background, weights, length),
                               expected, rtol=1e-10, atol=1e-13)
    # Any centres, row by row.
    np.testing.assert_allclose(sum(w * _product_kernel_shapley(centres, probe, row, length)
                                   for w, row in zip(weights, background)), expected, rtol=1e-10, atol=1e-13)
    # The owners a few at a time.
    monkeypatch.setattr(kernel_shap, "_SHAPLEY_BLOCK", 1)
    np.testing.assert_allclose(_coalition_kernel_shapley(masks, owners, probe, background, weights, length),
                               expected, rtol=1e-10, atol=1e-13)


def _problem(d, rows, samples, seed):
    rng = np.random.default_rng(seed)
    probe, background = rng.normal(size=d), rng.normal(size=(rows, d)) * rng.uniform(0.5, 2.0, size=d)
    projection = rng.normal(size=(d, 4))

    def f(z):
        return np.sin(np.tanh(z @ projection) @ np.arange(1.0, 5.0)) + z[..., 0] * z[..., 1]

    design = shapley_coalitions(d, samples, np.random.default_rng(seed + 1), rows=rows)
    values = np.stack([f(np.where(design.masks[r], probe, background[r])) for r in range(rows)])
    weights = rng.random(rows) + 0.5
    return design, values, f(background), float(f(probe)), weights / weights.sum(), probe, background


def _points(design, values, empty, full, probe, background):
    scale = np.concatenate([background, probe[None]]).std(axis=0)
    x, b = probe / scale, background / scale
    k = len(probe)
    points = np.concatenate([np.where(design.masks, x, b[:, None]).reshape(-1, k), b, x[None]])
    return x, b, np.sqrt(k), points, np.concatenate([values.ravel(), empty, [full]])


def _jackknife(influence, design, rows, s):
    influence = influence.reshape(-1, rows, s)[:, :, design.listed:].reshape(len(influence), -1)
    units = influence.shape[1]
    if units < 2:  # every coalition listed
        return 0.0
    influence = influence - influence.mean(axis=1, keepdims=True)
    return (units - 1) / units * np.sum(influence ** 2)


def _reference_surrogate(design, values, empty, full, weights, probe, background):
    """The exact kernel-ridge surrogate from the inverse of its Gram matrix."""
    rows, s = values.shape
    x, b, length, points, target = _points(design, values, empty, full, probe, background)
    total, sampled = len(points), rows * s
    inverse = np.linalg.inv(_kernel(points, points, length) + kernel_shap._SURROGATE_RIDGE * np.eye(total))
    alpha = inverse @ (target - target.mean())
    residual = kernel_shap._SURROGATE_RIDGE * alpha
    left, left_empty = residual[:sampled].reshape(rows, s), residual[sampled:sampled + rows]
    corrections, _ = _regressions(design, left - left_empty[:, None], residual[-1] - left_empty, np.arange(1))
    basis = sum(w * _product_kernel_shapley(points, x, row, length) for w, row in zip(weights, b))
    centring = np.eye(total) - 1.0 / total
    weight = basis @ inverse @ centring  # the estimate's weights on the values
    influence = weight[:, :sampled] * (alpha / np.diag(inverse))[:sampled]
    return basis @ alpha + weights @ corrections, _jackknife(influence, design, rows, s)


def _reference_nystrom(design, values, empty, full, weights, probe, background, centres):
    """The Nystrom surrogate from explicit inverses and its hat matrix."""
    rows, s = values.shape
    k = len(probe)
    x, b, length, points, target = _points(design, values, empty, full, probe, background)
    total, sampled = len(points), rows * s
    chosen = np.unique(np.linspace(0, sampled - 1, centres - rows - 1).round().astype(int))
    chosen = np.concatenate([chosen, np.arange(sampled, total)])
    cross = _kernel(points, points[chosen], length)
    root = np.linalg.inv(np.linalg.cholesky(cross[chosen] + kernel_shap._NYSTROM_JITTER * np.eye(len(chosen))))
    features = cross @ root.T
    inverse = np.linalg.inv(features.T @ features + kernel_shap._SURROGATE_RIDGE * np.eye(len(chosen)))
    hat = features @ inverse @ features.T
    to_beta = root.T @ inverse @ features.T  # the centres' coefficients from the centred values
    basis = sum(w * _product_kernel_shapley(points[chosen], x, row, length) for w, row in zip(weights, b))
    # The rows' regressions as a map from every point's value, one row at a time.
    mapping, offset = _regressions_and_map(design, values - empty[:, None], full - empty, np.arange(1))[2]
    regressions = np.zeros((k, total))
    for r, w in enumerate(weights):
        relabel = design.relabel[r]
        regressions[:, r * s:(r + 1) * s] += w * mapping[relabel]
        regressions[:, sampled + r] -= w * (mapping[relabel].sum(axis=1) + offset[relabel])
        regressions[:, -1] += w * offset[relabel]
    centring = np.eye(total) - 1.0 / total
    weight = (basis @ to_beta - regressions @ hat) @ centring + regressions
    residual = centring @ target - hat @ centring @ target
    influence = weight[:, :sampled] * (residual / np.maximum(1.0 - np.diag(hat), 1e-6))[:sampled]
    return weight @ target, _jackknife(influence, design, rows, s)


@pytest.mark.parametrize("d, rows, samples", [(6, 3, 30), (7, 2, 62), (5, 4, 12), (4, 3, 14)])
def test_the_surrogates_against_straightforward_computations(d, rows, samples):
    problem = _problem(d, rows, samples, seed=d)
    design, values, empty, full, weights, probe, background = problem
    mapping = _regressions_and_map(design, values - empty[:, None], full - empty, np.arange(1))[2]
    centres = min(24, values.size)
    expected = {"exact": _reference_surrogate(*problem),
                "nystrom": _reference_nystrom(*problem, centres)}
    for _ in range(2):  # twice: the scratch arrays of the first call (and of other sizes) are reused
        got = {"exact": _surrogate_regression(*problem),
               "nystrom": _nystrom_surrogate_regression(*problem, centres, mapping)}
        _surrogate_regression(*_problem(d + 1, rows + 1, samples, seed=1))  # another size in between
        for name in got:
            (phi, variance), (phi_expected, variance_expected) = got[name], expected[name]
            np.testing.assert_allclose(phi, phi_expected, rtol=0, atol=1e-8 * np.abs(phi_expected).max())
            if design.listed == len(design.weights):
                assert variance == 0
            else:
                np.testing.assert_allclose(variance, variance_expected, rtol=1e-7)
            np.testing.assert_allclose(phi.sum(), full - weights @ empty, atol=1e-9)  # efficiency
