"""Benchmark: tb_xai's KernelSHAP against shap.KernelExplainer, per model call and per second.

Prints, from one run:
- accuracy per model call: the relative L2 error against exact Shapley values (all 2^d coalitions
  enumerated, the same background), ours over shap's at equal budgets (coalitions per background row, so
  equal model evaluations), over several budgets, feature counts, background sizes and seeds;
- calibration of the estimated standard error: the real error's root mean square over the estimate's, per
  budget (1 = calibrated);
- throughput on an MLP 20-64-64-2 (64 probes, 50 background rows, 2088 coalitions): model rows/s over the
  model's best compiled batched predict rate (the best over call sizes), and seconds against shap fed the
  same compiled function, the two measured alternately; in wall and in process CPU time (all threads; the
  steadier figure on a shared machine).

    python bench/bench_kernel_shap.py                  # everything (a few minutes on 2 cores)
    python bench/bench_kernel_shap.py --accuracy-only
    python bench/bench_kernel_shap.py --speed-only
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tb_xai.backend import adapt  # noqa: E402
from tb_xai.methods import KernelShap  # noqa: E402
from tb_xai.probe import as_probe_set  # noqa: E402


def exact_shapley(adapter, x, target, background):
    """Interventional Shapley values over `background`, all 2^d coalitions evaluated."""
    d = x.shape[1]
    codes = np.arange(2 ** d)
    masks = (codes[:, None] >> np.arange(d)) & 1 == 1
    sizes = masks.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)])
    out = np.zeros(x.shape)
    for i in range(len(x)):
        rows = np.where(masks[:, None, :], x[i], background[None]).reshape(-1, d).astype(np.float32)
        value = adapter.predict([rows], batch_size=2 ** 16)[:, target[i]].reshape(2 ** d, -1).mean(axis=1)
        for j in range(d):
            without = codes[~masks[:, j]]
            out[i, j] = (weight[sizes[without]] * (value[without | (1 << j)] - value[without])).sum()
    return out


def accuracy(d: int, n_probes: int, n_background: int, budgets, seeds: int) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(32, activation="tanh"),
                              keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(2, activation="softmax")])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_probes, d)).astype(np.float32)
    background = rng.standard_normal((n_background, d)).astype(np.float32)
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    exact = exact_shapley(adapter, x, target, background)
    print(f"\n== error vs exact Shapley values: MLP {d}-32-32-2 (tanh, softmax), {n_probes} probes, "
          f"{n_background} background rows; relative L2 error, median over {seeds} seeds", flush=True)
    print(f"  {'coalitions':>10} {'ours':>8} {'shap':>8} {'ours/shap':>10} {'per seed':>22} {'SE calibration':>15}")
    for budget in budgets:
        ours, theirs, real, estimated = [], [], [], []
        for seed in range(seeds):
            for engine, errors in (("batched", ours), ("reference", theirs)):
                method = KernelShap(samples=budget, background=background, engine=engine, seed=seed)
                method.setup(adapter, probe)
                phi = method.attribute([x], target)[0]
                errors.append(np.linalg.norm(phi - exact) / np.linalg.norm(exact))
                if engine == "batched":
                    real.append(np.linalg.norm(phi - exact, axis=1))
                    estimated.append(method.standard_errors() * np.linalg.norm(phi, axis=1))
        per_seed = " ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs))
        # Root mean square of the real error over that of the estimated standard error, over probes and seeds.
        calibration = np.sqrt(np.mean(np.square(real)) / max(np.mean(np.square(estimated)), 1e-300))
        # Medians over seeds: at 2d + 2 coalitions shap's system is sometimes singular (errors of 1e14).
        ours_m, theirs_m = np.median(ours), np.median(theirs)
        print(f"  {budget:>10} {ours_m:8.4f} {theirs_m:8.4f} {ours_m / theirs_m:10.2f} {per_seed:>22} "
              f"{calibration:15.2f}", flush=True)


def clocks():
    """(wall, process CPU time of all threads): CPU time is the steadier measure on a shared machine."""
    return np.array([time.perf_counter(), time.process_time()])


def predict_rate(adapter, d: int, rows_per_call: int, total: int) -> np.ndarray:
    """Rows per wall second and per CPU second of the model's compiled predict at one call size."""
    rows = np.random.default_rng(0).standard_normal((rows_per_call, d)).astype(np.float32)
    adapter.predict([rows], batch_size=rows_per_call)
    calls = max(2, total // rows_per_call)
    start = clocks()
    for _ in range(calls):
        adapter.predict([rows], batch_size=rows_per_call)
    return calls * rows_per_call / (clocks() - start)


def best_predict_rate(adapter, d: int, total: int) -> np.ndarray:
    """The model's best compiled-predict rates (wall, CPU) over call sizes from 2^12 to 2^20 rows."""
    rates = {2 ** e: predict_rate(adapter, d, 2 ** e, total) for e in range(12, 21, 2)}
    print("  predict M rows/s by call size, wall (CPU): "
          + ", ".join(f"{k:,}: {v[0] / 1e6:.2f} ({v[1] / 1e6:.2f})" for k, v in rates.items()), flush=True)
    return np.max(list(rates.values()), axis=0)


def speed(n_probes: int, repeats: int) -> None:
    keras.utils.set_random_seed(0)
    d, b, budget = 20, 50, 2 * 20 + 2048
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_probes, d)).astype(np.float32)
    background = rng.standard_normal((b, d)).astype(np.float32)
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    print(f"\n== throughput: MLP 20-64-64-2, {n_probes} probes, {b} background rows, {budget} coalitions",
          flush=True)
    ours = KernelShap(samples=budget, background=background)
    theirs = KernelShap(samples=budget, background=background, engine="reference")
    for method in (ours, theirs):
        method.setup(adapter, probe)
        method.attribute([x[:1]], target[:1])
    rows = n_probes * ((budget + 1) * b + 1)  # per probe: each coalition and the empty one per row, the full one
    rate = best_predict_rate(adapter, d, 4_000_000)
    times = {"ours": [], "shap": []}
    for _ in range(repeats):  # alternately, so that both see the same machine load
        for name, method in (("ours", ours), ("shap", theirs)):
            start = clocks()
            method.attribute([x], target)
            times[name].append(clocks() - start)
    best = np.maximum(rate, best_predict_rate(adapter, d, 4_000_000))
    print(f"  ours in calls of {ours.rows_per_call(d, blended=True):,} rows, the fastest measured at its first call "
          f"(of at most {ours.largest_call(d, blended=True):,}; the first timed run includes the measurement)",
          flush=True)
    for clock, label in ((0, "wall"), (1, "CPU")):
        t_ours = min(t[clock] for t in times["ours"])
        t_shap = min(t[clock] for t in times["shap"])
        print(f"  {label}: ours {t_ours:.3f} s ({', '.join(f'{t[clock]:.3f}' for t in times['ours'])}), "
              f"{rows / t_ours / 1e6:.2f} M model rows/s = {rows / t_ours / best[clock]:.2f} of the best predict "
              f"rate ({best[clock] / 1e6:.2f} M rows/s); shap.KernelExplainer fed the compiled fn {t_shap:.3f} s "
              f"({', '.join(f'{t[clock]:.3f}' for t in times['shap'])}): ours {t_shap / t_ours:.2f}x faster "
              "(fastest of each; per pair " + ", ".join(f"{s[clock] / o[clock]:.2f}" for o, s in
                                                        zip(times["ours"], times["shap"])) + ")", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternate runs of ours and shap's")
    args = parser.parse_args()
    logging.getLogger("tb_xai").setLevel(logging.ERROR)  # the small-budget warning, expected at 2d + 2
    if not args.speed_only:
        accuracy(12, 8, 8, (26, 50, 100, 128, 300, 1024), args.seeds)
        accuracy(12, 8, 32, (26, 50, 100, 300, 1024), args.seeds)
        accuracy(16, 8, 8, (34, 50, 100, 300, 1000, 4096), args.seeds)
    if not args.accuracy_only:
        speed(64, args.repeats)


if __name__ == "__main__":
    main()
