"""Benchmark: tb_xai's batched KernelSHAP / LIME / expected gradients against the shap and lime libraries.

Prints, from one run and side by side, per method: seconds, model rows evaluated, rows/s as a fraction of the model's
best compiled batched predict rate over call sizes, the speed-up over the library engine, and the agreement with it
(correlation of ours with the library, next to the library's correlation with itself under another seed).
KernelSHAP's error against exact Shapley values is bench/bench_kernel_shap.py's.

    python bench/bench_shap_lime.py            # both setups
    python bench/bench_shap_lime.py --quick    # fewer probes, for a smoke run
    python bench/bench_shap_lime.py --images-only   # only the CNN table (LIME, KernelSHAP, occlusion on images)
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


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def predict_rate(adapter, row_shape, rows_per_call, total) -> float:
    """Rows/s of the model's own compiled predict on random rows, at `rows_per_call` rows per call."""
    rows = np.random.default_rng(0).standard_normal((rows_per_call,) + row_shape).astype(np.float32)
    adapter.predict([rows], batch_size=rows_per_call)
    calls = max(1, total // rows_per_call)
    _, seconds = timed(lambda: [adapter.predict([rows], batch_size=rows_per_call) for _ in range(calls)])
    return calls * rows_per_call / seconds


def best_predict_rate(adapter, row_shape, total, max_elements=2 ** 24) -> float:
    """The model's best compiled-predict rate over call sizes from 256 rows up to about 64 MB of input
    (throughput depends on the call size: methods are compared with the best, not their own size)."""
    size, rates = 256, {}
    while size * int(np.prod(row_shape)) <= max_elements:
        rates[size] = predict_rate(adapter, row_shape, size, max(total, 2 * size))
        size *= 4
    best = max(rates, key=rates.get)
    print("  predict rows/s by call size: " + ", ".join(f"{k:,}: {v / 1e6:.2f} M" for k, v in rates.items()),
          flush=True)
    return rates[best]


class Table:
    def __init__(self, title, model_rate):
        self.title, self.model_rate, self.lines = title, model_rate, []

    def add(self, method, seconds, rows, library_seconds=None, agreement=None, note=""):
        rate = rows / seconds if rows else float("nan")
        self.lines.append((method, seconds, rows, rate / self.model_rate if rows else float("nan"),
                           library_seconds / seconds if library_seconds else None, agreement, note))

    def print(self):
        print(f"\n== {self.title}: model's compiled batched predict {self.model_rate / 1e6:.2f} M rows/s")
        print(f"{'method':<34}{'seconds':>9}{'rows':>12}{'rows/s / predict':>18}{'speed-up':>10}   agreement")
        for method, seconds, rows, fraction, speedup, agreement, note in self.lines:
            sp = f"{speedup:9.1f}x" if speedup else f"{'':>10}"
            ag = ""
            if agreement:
                ag = f"corr(ours, lib)={agreement[0]:.4f}  corr(lib, lib seed 2)={agreement[1]:.4f}"
            print(f"{method:<34}{seconds:9.3f}{rows:12,d}{fraction:18.2f}{sp}   {ag} {note}")


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
    rate = best_predict_rate(adapter, (d,), 4_000_000)
    print(f"  kernel_shap's call size {ours_ks.rows_per_call(d):,} rows: "
          f"{predict_rate(adapter, (d,), ours_ks.rows_per_call(d), 4_000_000) / rate:.2f} of the best rate")
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
              note=f"(measured on {predict_path_probes} probes, scaled; ours {slow_s / ks_s:.0f}x faster)")

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


def cnn_setup(n_probes: int):
    keras.utils.set_random_seed(0)
    x_train, y_train = digits(1200)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    x = x_train[-n_probes:]
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([x]), axis=1)
    segmentation = Segmentation("slic", n_segments=40)
    lime = Lime(segmentation=segmentation)
    lime.setup(adapter, probe)
    rate = best_predict_rate(adapter, (28, 28, 1), 100_000, max_elements=2 ** 23)
    table = Table(f"CNN 28x28x1 digits, {n_probes} probes, SLIC superpixels", rate)
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

    method = Occlusion(window=4, stride=2)
    _, s = run_method(method, adapter, probe, [x], target)
    table.add("occlusion (window 4, stride 2)", s, n_probes * method.rows_per_probe())
    table.print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer probes")
    parser.add_argument("--images-only", action="store_true",
                        help="only the CNN table (LIME on superpixels, KernelSHAP, occlusion against the best predict rate)")
    args = parser.parse_args()
    if args.images_only:
        cnn_setup(4 if args.quick else 16)
        return
    mlp_setup(16 if args.quick else 64, predict_path_probes=1)
    cnn_setup(4 if args.quick else 16)


if __name__ == "__main__":
    main()
