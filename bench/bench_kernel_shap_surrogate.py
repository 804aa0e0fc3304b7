"""Benchmark: the CPU time per probe of KernelSHAP's kernel-ridge surrogates, on one BLAS thread as the
callback runs them.

Prints, for synthetic tabular probes (a smooth nonlinear model, random background rows and row weights), the
process CPU time of one probe's `_surrogate_regression` (up to 1,024 sampled model rows) and
`_nystrom_surrogate_regression` (512 centres, above that up to 4,096; the rows' regression map, which
`_estimate` computes anyway, outside the timing), the best of a few repeats, with the share of it in the
surrogates' Shapley basis (`_coalition_kernel_shapley`).

    python bench/bench_kernel_shap_surrogate.py             # a minute or so on 2 cores
    python bench/bench_kernel_shap_surrogate.py --repeats 5
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from tb_xai.methods import kernel_shap
from tb_xai.methods.coalitions import shapley_coalitions
from tb_xai.methods.surrogate import single_threaded_blas

#: (features, background rows, coalitions per row): exact fits (768-1,024 sampled rows), then Nystrom ones.
CASES = [(30, 24, 32), (16, 8, 128), (30, 8, 128), (30, 24, 64), (12, 24, 128), (16, 8, 300), (16, 16, 200)]


def problem(d: int, rows: int, samples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(d, 6))

    def f(z):
        h = np.tanh(z @ projection)
        return np.sin(h @ np.arange(1.0, 7.0)) + z[..., 0] * z[..., 1]

    x, background = rng.normal(size=d), rng.normal(size=(rows, d))
    design = shapley_coalitions(d, samples, np.random.default_rng(seed + 1), rows=rows)
    values = np.stack([f(np.where(design.masks[r], x, background[r])) for r in range(rows)])
    weights = rng.random(rows) + 0.5
    return design, values, f(background), float(f(x)), weights / weights.sum(), x, background


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    basis_time = [0.0]
    original = kernel_shap._coalition_kernel_shapley

    @functools.wraps(original)
    def timed(*a, **k):
        start = time.process_time()
        try:
            return original(*a, **k)
        finally:
            basis_time[0] += time.process_time() - start

    kernel_shap._coalition_kernel_shapley = timed
    print("features rows coalitions  sampled rows  fit      CPU ms/probe  (of it the Shapley basis)")
    try:
        with single_threaded_blas():
            for d, rows, samples in CASES:
                design, values, empty, full, weights, x, background = p = problem(d, rows, samples)
                if values.size <= kernel_shap._SURROGATE_MAX_POINTS:
                    name, fit = "exact", functools.partial(kernel_shap._surrogate_regression, *p)
                else:
                    mapping = kernel_shap._regressions_and_map(design, values - empty[:, None], full - empty,
                                                               np.arange(1))[2]
                    name = "nystrom"
                    fit = functools.partial(kernel_shap._nystrom_surrogate_regression, *p,
                                            kernel_shap._NYSTROM_CENTRES, mapping)
                fit()  # the scratch arrays, as from the second probe of a step on
                best = (np.inf, 0.0)
                for _ in range(args.repeats):
                    basis_time[0] = 0.0
                    start = time.process_time()
                    fit()
                    best = min(best, (time.process_time() - start, basis_time[0]))
                print(f"{d:8d} {rows:4d} {samples:10d}  {values.size:12d}  {name:8s} {best[0] * 1e3:12.1f}"
                      f"  ({best[1] * 1e3:.1f})")
    finally:
        kernel_shap._coalition_kernel_shapley = original


if __name__ == "__main__":
    main()
