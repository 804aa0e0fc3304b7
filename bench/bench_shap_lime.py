"""Benchmark: tb_xai's batched KernelSHAP / LIME / expected gradients against the shap and lime libraries.

Prints, from one run and side by side, per method: seconds, model rows evaluated, rows/s as a fraction of the model's
best compiled batched predict rate over call sizes (in wall time and in process CPU time, all threads), the speed-up
over the library engine, and the agreement with it (correlation of ours with the library, next to the library's
correlation with itself under another seed). KernelSHAP's error against exact Shapley values is
bench/bench_kernel_shap.py's.

The image part then measures the rates alone, on workloads long enough to time on a shared machine: each repeat
sweeps the model's predict over call sizes, then runs every method once, so that each method's rate is divided by
a best rate measured next to it; the median over repeats is printed, with the range. Two models: the digits CNN of
the library comparison, and the 32x32x3 CNN of bench/bench_overhead.py (the performance issue's workload) on
crops of scikit-learn's bundled sample photographs.

    python bench/bench_shap_lime.py            # both setups
    python bench/bench_shap_lime.py --quick    # fewer probes and repeats, for a smoke run
    python bench/bench_shap_lime.py --images-only   # only the image tables (LIME, KernelSHAP, occlusion)
    python bench/bench_shap_lime.py --tabular-only  # only the MLP comparison with shap and lime
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tb_xai.backend import adapt  # noqa: E402
from tb_xai.methods import ExpectedGradients, KernelShap, Lime, Occlusion, Segmentation  # noqa: E402
from tb_xai.probe import as_probe_set  # noqa: E402


def clocks() -> np.ndarray:
    """(wall, process CPU time of all threads): CPU time is the steadier measure on a shared machine."""
    return np.array([time.perf_counter(), time.process_time()])


def timed(fn):
    start = clocks()
    out = fn()
    return out, clocks() - start


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def predict_rate(adapter, row_shape, rows_per_call, total) -> np.ndarray:
    """Rows per wall second and per CPU second of the model's own compiled predict on random rows, at
    `rows_per_call` rows per call."""
    rows = np.random.default_rng(0).standard_normal((rows_per_call,) + row_shape).astype(np.float32)
    adapter.predict([rows], batch_size=rows_per_call)
    calls = max(2, total // rows_per_call)
    _, seconds = timed(lambda: [adapter.predict([rows], batch_size=rows_per_call) for _ in range(calls)])
    return calls * rows_per_call / seconds


def predict_rates(adapter, row_shape, total, max_elements=2 ** 24) -> dict:
    """The model's compiled-predict rates (wall, CPU) at call sizes from 256 rows, by 4, up to about 64 MB of input
    (throughput depends on the call size: methods are compared with the best, not their own size)."""
    size, rates = 256, {}
    while size * int(np.prod(row_shape)) <= max_elements:
        rates[size] = predict_rate(adapter, row_shape, size, max(total, 2 * size))
        size *= 4
    return rates


def show_rates(rates: dict) -> str:
    return ", ".join(f"{k:,}: {v[0] / 1e6:.3f} ({v[1] / 1e6:.3f})" for k, v in rates.items())


def best_predict_rate(adapter, row_shape, total, max_elements=2 ** 24) -> np.ndarray:
    """The best rates (wall, CPU) over call sizes, printing each."""
    rates = predict_rates(adapter, row_shape, total, max_elements)
    print("  predict M rows/s by call size, wall (CPU): " + show_rates(rates), flush=True)
    return np.max(list(rates.values()), axis=0)


def call_sizes(adapter, fn) -> list:
    """Rows of each model call `fn` makes."""
    sizes, predict = [], adapter.predict

    def counted(inputs, batch_size=None):
        size = batch_size or adapter.batch_size
        sizes.extend(min(size, len(inputs[0]) - start) for start in range(0, len(inputs[0]), size))
        return predict(inputs, batch_size=batch_size)
    adapter.predict = counted
    try:
        fn()
    finally:
        del adapter.predict
    return sizes


class Table:
    def __init__(self, title, model_rate, note="one run each"):
        self.title, self.model_rate, self.note, self.lines = title, model_rate, note, []

    def add(self, method, seconds, rows, library_seconds=None, agreement=None, note=""):
        fraction = rows / seconds / self.model_rate if rows else np.full(2, np.nan)
        speedup = library_seconds / seconds if library_seconds is not None else None
        self.lines.append((method, seconds, rows, fraction, speedup, agreement, note))

    def print(self):
        print(f"\n== {self.title}: model's best compiled predict {self.model_rate[0] / 1e6:.3f} M rows/s wall, "
              f"{self.model_rate[1] / 1e6:.3f} M per CPU second ({self.note})")
        print(f"{'method':<38}{'seconds wall (CPU)':>20}{'rows':>10}{'of predict':>14}{'speed-up':>16}   agreement")
        for method, seconds, rows, fraction, speedup, agreement, note in self.lines:
            sp = f"{speedup[0]:6.1f}x ({speedup[1]:.1f}x)" if speedup is not None else ""
            ag = ""
            if agreement:
                ag = f"corr(ours, lib)={agreement[0]:.4f}  corr(lib, lib seed 2)={agreement[1]:.4f}"
            print(f"{method:<38}{seconds[0]:11.3f} ({seconds[1]:.3f}){rows:10,d}{fraction[0]:7.2f} ({fraction[1]:.2f})"
                  f"{sp:>16}   {ag} {note}")


def prepared(method, adapter, probe, inputs, target):
    """`method` set up and traced on one probe; returns the call timed."""
    method.setup(adapter, probe)
    method.attribute([a[:1] for a in inputs], target[:1])
    return lambda: method.attribute(inputs, target)


def throughput(title, adapter, row_shape, methods, repeats, total, max_elements=2 ** 24) -> None:
    """Each repeat: the predict sweep over call sizes, then each of `methods` ((name, run, model rows)) once;
    a method's rate over the best predict rate of its own repeat, median and range over the repeats."""
    print(f"\n== {title}: model rows/s over the best predict rate of the same repeat, {repeats} repeats", flush=True)
    for name, run, rows in methods:
        sizes = call_sizes(adapter, run)
        print(f"  {name}: {rows:,} model rows in {len(sizes)} calls of up to {max(sizes):,} rows", flush=True)
    ratios = {name: [] for name, _, _ in methods}
    seconds = {name: [] for name, _, _ in methods}
    for r in range(repeats):
        rates = predict_rates(adapter, row_shape, total, max_elements)
        best = np.max(list(rates.values()), axis=0)
        print(f"  repeat {r + 1}, predict M rows/s by call size, wall (CPU): {show_rates(rates)}", flush=True)
        for name, run, rows in methods:
            _, elapsed = timed(run)
            seconds[name].append(elapsed)
            ratios[name].append(rows / elapsed / best)
    print(f"{'method':<46}{'rows':>10}{'median s wall (CPU)':>21}{'wall: median (range)':>24}"
          f"{'CPU: median (range)':>24}")
    for name, _, rows in methods:
        ratio, s = np.array(ratios[name]), np.median(seconds[name], axis=0)
        cells = [f"{np.median(ratio[:, c]):.2f} ({ratio[:, c].min():.2f}-{ratio[:, c].max():.2f})" for c in (0, 1)]
        print(f"{name:<46}{rows:10,d}{s[0]:12.3f} ({s[1]:.3f}){cells[0]:>24}{cells[1]:>24}", flush=True)


def run_method(method, adapter, probe, inputs, target):
    method.setup(adapter, probe)
    method.attribute([a[:1] for a in inputs], target[:1])  # trace and warm up
    return timed(lambda: method.attribute(inputs, target)[0])


def mlp_setup(n_probes: int, predict_path_probes: int):
    keras.utils.set_random_seed(0)
    d = 20
    model = keras.Sequential([
        keras.Input((d,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    rng = np.random.default_rng(0)
    x_train = rng.standard_normal((2000, d)).astype(np.float32)
    y_train = (x_train[:, :5].sum(axis=1) + x_train[:, 5] * x_train[:, 6] > 0).astype(np.int32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    x = x_train[:n_probes]
    background = x_train[1000:1050]
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    ours_ks = KernelShap(background=background)
    ours_ks.setup(adapter, probe)
    ours_ks.attribute([x], target)  # its first call measures the model's predict rates by call size
    rate = best_predict_rate(adapter, (d,), 4_000_000)
    size = ours_ks.rows_per_call(d, blended=True)
    own = predict_rate(adapter, (d,), size, 4_000_000) / rate
    print(f"  kernel_shap's call size {size:,} rows (of at most {ours_ks.largest_call(d, blended=True):,}): "
          f"{own[0]:.2f} (CPU {own[1]:.2f}) of the best rate")
    table = Table(f"MLP 20-64-64-2, {n_probes} probes, 50 background rows", rate)

    # shap's nsamples="auto" is 2K + 2048 coalitions: ours at that same budget (no "auto" doubling).
    ks_method = KernelShap(samples=2 * d + 2048, background=background)
    ks, ks_s = run_method(ks_method, adapter, probe, [x], target)
    ks_rows = n_probes * ks_method.samples_per_probe(d) * 50
    ref1, ref_s = run_method(KernelShap(background=background, engine="reference"), adapter, probe, [x], target)
    ref2, _ = run_method(KernelShap(background=background, engine="reference", seed=1), adapter, probe, [x], target)
    table.add("kernel_shap (2088 coalitions)", ks_s, ks_rows, ref_s, (corr(ks, ref1), corr(ref1, ref2)))
    table.add("  shap.KernelExplainer, compiled fn", ref_s, n_probes * 2088 * 50)

    import shap

    def predict_path():
        for i in range(predict_path_probes):
            explainer = shap.KernelExplainer(lambda rows: model.predict(rows, verbose=0)[:, target[i]], background)
            explainer.shap_values(x[i:i + 1], nsamples=2088, l1_reg=False, silent=True)
    _, slow_s = timed(predict_path)
    slow_s *= n_probes / predict_path_probes
    table.add("  shap.KernelExplainer, model.predict", slow_s, n_probes * 2088 * 50,
              note=f"(measured on {predict_path_probes} probes, scaled; ours {slow_s[0] / ks_s[0]:.0f}x faster)")

    lime, lime_s = run_method(Lime(background=background), adapter, probe, [x], target)
    lref1, lref_s = run_method(Lime(background=background, engine="reference"), adapter, probe, [x], target)
    lref2, _ = run_method(Lime(background=background, engine="reference", seed=1), adapter, probe, [x], target)
    table.add("lime (5000 samples)", lime_s, n_probes * 5000, lref_s, (corr(lime, lref1), corr(lref1, lref2)),
              f"(rows = the sample budget; the model evaluates {4999 + n_probes:,}: samples shared by all probes)")
    table.add("  lime LimeTabularExplainer, compiled", lref_s, n_probes * 5000)

    eg, eg_s = run_method(ExpectedGradients(background=background, samples=200), adapter, probe, [x], target)
    explainer = shap.GradientExplainer(model, background)
    gx1, gx_s = timed(lambda: np.asarray(explainer.shap_values(x, nsamples=200, rseed=1)))
    gx2 = np.asarray(explainer.shap_values(x, nsamples=200, rseed=2))
    pick = lambda values: values[np.arange(n_probes), :, target]  # noqa: E731  (probes, features, outputs)
    table.add("expected_gradients (200 samples)", eg_s, n_probes * 200, gx_s,
              (corr(eg, pick(gx1)), corr(pick(gx1), pick(gx2))), "(forward+backward rows)")
    table.add("  shap.GradientExplainer nsamples=200", gx_s, n_probes * 200)
    table.print()


def digits(n: int) -> tuple:
    """sklearn's 8x8 digits upscaled to 28x28 grayscale in [0, 1] (bundled with scikit-learn: no download)."""
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.stack([resize(img / 16.0, (28, 28), order=1) for img in data.images[:n]])
    return images[..., None].astype(np.float32), data.target[:n]


def digits_cnn():
    keras.utils.set_random_seed(0)
    x_train, y_train = digits(1200)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    return model, x_train


def cnn_setup(n_probes: int):
    """The digits CNN against lime and shap: seconds, speed-up and agreement."""
    model, x_train = digits_cnn()
    x = x_train[-n_probes:]
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    segmentation = Segmentation("slic", n_segments=40)
    rate = best_predict_rate(adapter, (28, 28, 1), 100_000, max_elements=2 ** 23)
    table = Table(f"CNN 28x28x1 digits, {n_probes} probes, SLIC superpixels", rate,
                  "one run each: the rates over repeats are the next tables'")
    k = np.mean([segmentation(image).max() + 1 for image in x])

    ours, s = run_method(Lime(segmentation=segmentation), adapter, probe, [x], target)
    ref1, ref_s = run_method(Lime(segmentation=segmentation, engine="reference"), adapter, probe, [x], target)
    ref2, _ = run_method(Lime(segmentation=segmentation, engine="reference", seed=1), adapter, probe, [x], target)
    table.add("lime image (1000 samples)", s, n_probes * 1000, ref_s, (corr(ours, ref1), corr(ref1, ref2)))
    table.add("  LimeImageExplainer, compiled fn", ref_s, n_probes * 1000)

    method = KernelShap(segmentation=segmentation, tolerance=0.999)  # the first budget, 2K + 2048, as shap's
    ours, s = run_method(method, adapter, probe, [x], target)
    rows = int(round(len(x) * (method.diagnostics()["samples_mean"] + 2)))
    ref1, ref_s = run_method(KernelShap(segmentation=segmentation, engine="reference"), adapter, probe, [x], target)
    ref2, _ = run_method(KernelShap(segmentation=segmentation, engine="reference", seed=1), adapter, probe, [x],
                         target)
    table.add(f"kernel_shap superpixels (K~{k:.0f})", s, rows, ref_s, (corr(ours, ref1), corr(ref1, ref2)))
    table.add("  shap.KernelExplainer, compiled fn", ref_s, rows)
    table.print()


def image_rates(probes: dict, repeats: int) -> None:
    """LIME on superpixels, KernelSHAP and occlusion (window 4, stride 2) against the best predict rate, on the
    digits CNN and on the 32x32x3 CNN of bench_overhead.py; `probes` per method and model."""
    model, x_train = digits_cnn()
    x = x_train[-max(probes["digits"].values()):]
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    segmentation = Segmentation("slic", n_segments=40)
    n = probes["digits"]
    lime = prepared(Lime(segmentation=segmentation), adapter, probe, [x[:n["lime"]]], target[:n["lime"]])
    ks = KernelShap(segmentation=segmentation, tolerance=0.999)
    ks_run = prepared(ks, adapter, probe, [x[:n["kernel_shap"]]], target[:n["kernel_shap"]])
    ks_run()
    ks_rows = int(round(n["kernel_shap"] * (ks.diagnostics()["samples_mean"] + 2)))
    occlusion = Occlusion(window=4, stride=2)
    occ = prepared(occlusion, adapter, probe, [x[:n["occlusion"]]], target[:n["occlusion"]])
    throughput("CNN 28x28x1 digits, SLIC superpixels", adapter, (28, 28, 1), [
        (f"lime image (1000 samples), {n['lime']} probes", lime, n["lime"] * 1000),
        (f"kernel_shap superpixels, {n['kernel_shap']} probes", ks_run, ks_rows),
        (f"occlusion (window 4, stride 2), {n['occlusion']} probes", occ, n["occlusion"] * occlusion.rows_per_probe()),
    ], repeats, total=32_768)

    # The performance issue's workload: bench_overhead.py's CNN on 32x32x3 images (random weights: the rate does
    # not depend on them), here on crops of scikit-learn's bundled sample photographs, for superpixels with edges.
    from sklearn.datasets import load_sample_images

    from bench_overhead import cnn  # this directory is on the path when a bench runs as a script

    keras.utils.set_random_seed(0)
    model = cnn()
    n = probes["cifar"]
    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    crops = []
    for _ in range(max(n.values())):
        photo = photos[rng.integers(len(photos))]
        r, c = rng.integers(photo.shape[0] - 32), rng.integers(photo.shape[1] - 32)
        crops.append(photo[r:r + 32, c:c + 32])
    x = (np.stack(crops) / 255.0).astype(np.float32)
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    lime = prepared(Lime(segmentation=segmentation), adapter, probe, [x[:n["lime"]]], target[:n["lime"]])
    occ = prepared(occlusion, adapter, probe, [x[:n["occlusion"]]], target[:n["occlusion"]])
    throughput("CNN 32x32x3 (bench_overhead's), photograph crops, SLIC superpixels", adapter, (32, 32, 3), [
        (f"lime image (1000 samples), {n['lime']} probes", lime, n["lime"] * 1000),
        (f"occlusion (window 4, stride 2), {n['occlusion']} probes", occ, n["occlusion"] * occlusion.rows_per_probe()),
    ], repeats, total=4_096)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer probes")
    parser.add_argument("--images-only", action="store_true",
                        help="only the image tables (LIME on superpixels, KernelSHAP, occlusion against the best predict rate)")
    parser.add_argument("--tabular-only", action="store_true",
                        help="only the MLP comparison with shap and lime (no image models)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the image rates (default 5, 2 quick)")
    args = parser.parse_args()
    if args.images_only and args.tabular_only:
        parser.error("--images-only and --tabular-only exclude each other")
    repeats = args.repeats or (2 if args.quick else 5)
    probes = ({"digits": {"lime": 8, "kernel_shap": 4, "occlusion": 32}, "cifar": {"lime": 2, "occlusion": 8}}
              if args.quick else
              {"digits": {"lime": 64, "kernel_shap": 16, "occlusion": 256}, "cifar": {"lime": 16, "occlusion": 64}})
    if not args.images_only:
        mlp_setup(16 if args.quick else 64, predict_path_probes=1)
    if args.tabular_only:
        return
    cnn_setup(4 if args.quick else 16)
    image_rates(probes, repeats)


if __name__ == "__main__":
    main()
