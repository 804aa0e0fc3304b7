"""What the callback adds to training: epoch CPU time with the callback over without, at its defaults.

Run: python bench/bench_overhead.py [--pairs 5] [--images 20000] [--skip-demos | --demos-only] [--demo tabular]
     [--demo-epochs 15] [--demo-defaults-only] [--max-overhead 0.05] [--quick] [--parts 40 | --alternate 10]
(CPU; prints ratios measured in this one run; about 12 epochs of 20,000 images, 4-5 minutes on an idle 2-core
machine; `--quick`: 5,000 images and 3 pairs, whose ratio overstates the full one, since the callback's cost per
logged epoch is the same over an epoch a quarter as long; `--demos-only`: the demo models alone, about 5 minutes)

Workload: a CNN over 32x32x3 images, 20,000 images per epoch, batch 128, 64 probes, the default methods
(saliency, integrated gradients). Each measurement is one epoch, alternately without and with the callback
(adjacent pairs on the same model, which keeps training); the tracing epochs are dropped. Each with-epoch is a
fit of its own, whose first and last epoch the callback always logs: every epoch is logged, whatever the budget. Reported: the
median over pairs of process CPU time with / without (all threads of this process, so other programs on
the machine weigh on it little), the range over pairs, the ratio of all pairs summed (the figure to read with
`max_overhead`, where only some epochs log), and the wall-clock ratio beside it. Target <= 1.05.

The demo models (demo/tabular.py's breast-cancer MLP, 32 probes, and demo/digits.py's digits CNN, 16 probes,
with the demos' own data, probes and method configurations) have epochs of tens of milliseconds, so there a
pair is a fit of the demos' 15 epochs without and one with, on one model that keeps training (the first pair,
with the tracing and the callback's setup, dropped). Each demo is measured (a) at the callback's defaults
(`max_overhead=0.05`), (b) at the defaults with every epoch logged (`max_overhead=None`), (c) with the demo's
methods, (d) with those and every epoch logged;
beside each, the CPU time per method at the last logged epoch, the epochs logged, kernel_shap's budget and
standard error per logged epoch, and one fresh fit with the callback over one without, tracing and setup
included (what a user running the demo gets; one sample, so noisier).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tb_xai  # noqa: E402


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def cnn():
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def report(name, pairs):
    cpu = [w[0] / wo[0] for wo, w in pairs]
    wall = [w[1] / wo[1] for wo, w in pairs]
    base = statistics.median(wo[0] for wo, _ in pairs)
    total = sum(w[0] for _, w in pairs) / sum(wo[0] for wo, _ in pairs)
    print(f"{name}: CPU time ratio {statistics.median(cpu):.3f} (pairs {min(cpu):.3f}-{max(cpu):.3f}, "
          f"all pairs summed {total:.3f}); "
          f"wall {statistics.median(wall):.3f} (pairs {min(wall):.3f}-{max(wall):.3f}); "
          f"{len(pairs)} pairs, CPU {base:.2f} s without", flush=True)


def cnn_workload(n_images: int, n_pairs: int, log_root: str, **callback_kwargs) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, n_images)
    # Labels that depend on the image, so the model learns something and its gradients are not noise.
    y = (x[:, :16, :16, 0].mean(axis=(1, 2)) * 40).astype(np.int64) % 10
    keras.utils.set_random_seed(0)
    model = cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cb = tb_xai.AttributionCallback(os.path.join(log_root, "cnn" + "_".join(map(str, callback_kwargs))), x[:64],
                                    **callback_kwargs)
    epoch = 0

    def fit(callbacks):
        nonlocal epoch
        model.fit(x, y, batch_size=128, epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=callbacks)
        epoch += 1

    timed(lambda: fit([]))  # tracing of the training step
    timed(lambda: fit([cb]))  # tracing of the methods
    pairs = []
    for _ in range(n_pairs):
        pairs.append((timed(lambda: fit([])), timed(lambda: fit([cb]))))
        (cpu_without, wall_without), (cpu_with, wall_with) = pairs[-1]
        print(f"  pair {len(pairs)}: CPU {cpu_without:.2f} s -> {cpu_with:.2f} s, wall {wall_without:.2f} s -> "
              f"{wall_with:.2f} s; IG {cb.methods[1].diagnostics()}", flush=True)
    report(f"CNN 32x32x3, {n_images} images/epoch, batch 128, 64 probes, {cb.methods[0].name}+"
           f"{cb.methods[1].name}{' ' + str(callback_kwargs) if callback_kwargs else ''}", pairs)
    timings = ", ".join(f"{k} {v:.3f} s" for k, v in cb.timings.items())
    quality = ", ".join(f"{m} {g} {v * 1e3:.0f} ms" for m, groups in cb.quality.timings.items()
                        for g, v in groups.items())
    print(f"  last logged epoch, wall: {timings}; quality figures: {quality}", flush=True)


def budget_workload(n_images: int, epochs: int, max_overhead: float, log_root: str) -> None:
    """`max_overhead` spaces logged epochs within one fit: one fit of `epochs` without, one with."""
    rng = np.random.default_rng(0)
    x = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    y = (x[:, :16, :16, 0].mean(axis=(1, 2)) * 40).astype(np.int64) % 10
    keras.utils.set_random_seed(0)
    model = cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)  # tracing of the training step
    cb = tb_xai.AttributionCallback(os.path.join(log_root, "cnn_budget"), x[:64], max_overhead=max_overhead)
    model.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=[cb])  # tracing of the methods
    without = timed(lambda: model.fit(x, y, batch_size=128, epochs=epochs, verbose=0))
    with_cb = timed(lambda: model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[cb]))
    logged = len(tb_xai.load(os.path.join(log_root, "cnn_budget")).steps("integrated_gradients"))
    print(f"CNN 32x32x3, {n_images} images/epoch, max_overhead={max_overhead}: one {epochs}-epoch fit with the "
          f"callback over one without: CPU {with_cb[0] / without[0]:.3f} ({without[0]:.1f} s -> {with_cb[0]:.1f} s), "
          f"wall {with_cb[1] / without[1]:.3f}; {logged} of {epochs} epochs logged (first and last always)",
          flush=True)


def demo_workload(name, model_fn, data, methods, n_pairs, log_root, epochs, batch_size, **callback_kwargs):
    """Pairs of `epochs`-epoch fits of one demo model, alternately without and with the callback; then what a
    user running the demo gets: one fresh fit without, one with (tracing and the callback's setup included)."""
    x, y, probe, labels = data
    label = "defaults" if methods is None else "demo methods"
    run_dir = os.path.join(log_root, f"{name}_{label}_{'_'.join(map(str, callback_kwargs.values()))}".replace(" ", "_"))

    def callback(directory):
        return tb_xai.AttributionCallback(directory, probe, labels=labels,
                                          **({} if methods is None else {"methods": methods()}), **callback_kwargs)

    def fresh_fit(callbacks):
        keras.utils.set_random_seed(0)
        fresh = model_fn()
        return timed(lambda: fresh.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks))

    keras.utils.set_random_seed(0)
    model = model_fn()
    cb = callback(run_dir)
    epoch = 0

    def fit(callbacks):
        nonlocal epoch
        model.fit(x, y, batch_size=batch_size, epochs=epoch + epochs, initial_epoch=epoch, verbose=0,
                  callbacks=callbacks)
        epoch += epochs

    timed(lambda: fit([]))  # tracing of the training step
    timed(lambda: fit([cb]))  # the callback's setup (tracing, the sanity reference) and its methods' tracing
    traced = epoch
    own = [0.0]  # the CPU time of the logged steps themselves, in the measured fits
    log = cb._log

    def counted_log(step):
        started = time.process_time()
        try:
            log(step)
        finally:
            own[0] += time.process_time() - started

    cb._log = counted_log
    pairs = [(timed(lambda: fit([])), timed(lambda: fit([cb]))) for _ in range(n_pairs)]
    report(f"{name}, {label} ({'+'.join(m.name for m in cb.methods)})"
           f"{' ' + str(callback_kwargs) if callback_kwargs else ''}, {epochs}-epoch fits, {len(probe)} probes", pairs)
    print(f"  the logged steps' own CPU time over the fits without: 1 + {own[0] / sum(wo[0] for wo, _ in pairs):.3f} "
          f"(less noisy than the pairs' ratio on a shared machine; it leaves out what the steps cost training "
          f"around them)", flush=True)
    logged = _scalars(cb.run_dir, "xai/" + cb.methods[0].name + "/total_attribution")
    logged = [s for s in logged if s >= traced]
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in cb.cpu_timings.items())
    per_epoch = statistics.median(wo[0] for wo, _ in pairs) / epochs
    print(f"  CPU s per training epoch {per_epoch:.3f}; last logged epoch, CPU s per method: {cpu}; "
          f"{len(logged)} of {n_pairs * epochs} epochs logged in the measured fits", flush=True)
    without, with_cb = fresh_fit([]), fresh_fit([callback(run_dir + "_fresh")])
    print(f"  one fresh {epochs}-epoch fit with the callback over one without (tracing and setup included, one "
          f"sample): CPU {with_cb[0] / without[0]:.3f} ({without[0]:.2f} s -> {with_cb[0]:.2f} s), "
          f"wall {with_cb[1] / without[1]:.3f}", flush=True)
    if any(m.name == "kernel_shap" for m in cb.methods):
        samples = _scalars(cb.run_dir, "xai/kernel_shap/samples_mean")
        errors = _scalars(cb.run_dir, "xai/kernel_shap/standard_error_max")
        print("  kernel_shap per logged epoch (samples per probe, largest relative standard error): "
              + ", ".join(f"{s}: {samples[s]:.0f}/{errors[s]:.3f}" for s in sorted(samples)), flush=True)


def _scalars(run_dir: str, tag: str) -> dict:
    """step -> value of a scalar the callback wrote."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run_dir), size_guidance={"tensors": 0}).Reload()
    if tag not in events.Tags().get("tensors", []):
        return {}
    return {e.step: float(e.tensor_proto.float_val[0]) for e in events.Tensors(tag)}


def demos(n_pairs: int, log_root: str, epochs: int, which=("tabular", "digits"), defaults_only: bool = False) -> None:
    """The demo models, their data, probes and methods as demo/tabular.py and demo/digits.py build them: at the
    callback's defaults (its 5% budget), at the defaults with every epoch logged (max_overhead=None), with the
    demo's methods, and with those and every epoch logged (`defaults_only`: the first alone)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "demo"))
    import digits as digits_demo  # noqa: E402
    import tabular as tabular_demo  # noqa: E402

    x, y, probe, labels, _, _ = tabular_demo.breast_cancer(32)
    tabular = ("breast-cancer MLP", tabular_demo.model, (x, y, probe, labels), lambda: tabular_demo.methods(x), 32)
    digits = ("digits CNN", digits_demo.model, digits_demo.digits(16), digits_demo.methods, 64)
    for key, (name, model_fn, data, methods, batch_size) in (("tabular", tabular), ("digits", digits)):
        if key not in which:
            continue
        configurations = ((None, {}), (None, {"max_overhead": None}), (methods, {}), (methods, {"max_overhead": None}))
        for chosen, kwargs in configurations[:1] if defaults_only else configurations:
            demo_workload(name, model_fn, data, chosen, n_pairs, log_root, epochs, batch_size, **kwargs)


def parts(n_steps: int, epochs: int, which=("tabular", "digits")) -> None:
    """One logged step of each demo at the callback's defaults, in parts: the process CPU time of each (mean over
    `n_steps` steps logged one after another on the model trained `epochs` epochs, the first two steps dropped)
    and the compiled model calls it makes (TensorFlow backend)."""
    import tb_xai.backend.tensorflow as tf_backend

    for key, name, model_fn, data, batch_size in _demo_models(which):
        with tempfile.TemporaryDirectory() as run_dir:
            cb = _trained_at_defaults(run_dir, model_fn, data, batch_size, epochs)
            spent: dict = {}
            calls = [0]

            def timed_part(part, fn, count=False):
                def wrapper(*args, **kwargs):
                    started = time.process_time()
                    if count:
                        calls[0] += 1
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        spent[part] = spent.get(part, 0.0) + time.process_time() - started
                return wrapper

            original_call = tf_backend._call
            tf_backend._call = timed_part("compiled calls", original_call, count=True)
            cb._adapter.predict = timed_part("predictions (compiled)", cb._adapter.predict)
            if hasattr(cb._adapter, "predict_with_gradients"):
                cb._adapter.predict_with_gradients = timed_part("predictions with saliency's gradients (compiled)",
                                                                cb._adapter.predict_with_gradients)
            cb._log_probe_state = timed_part("probe state (predictions, targets, writing)", cb._log_probe_state)
            for method in cb.methods:
                method.attribute = timed_part(f"{method.name}: attribute", method.attribute)
            cb._log_method = timed_part("methods with their checks, summaries and writing", cb._log_method)
            cb.quality.write = timed_part("quality figures (computed and written)", cb.quality.write)
            cb._writer.flush = timed_part("flush", cb._writer.flush)
            cb._log = timed_part("the whole step", cb._log)
            for step in range(epochs, epochs + n_steps + 2):
                if step == epochs + 2:
                    spent.clear()
                    calls[0] = 0
                cb._log(step)
            cb._writer.close()
            tf_backend._call = original_call
        print(f"{name}, defaults, one logged step in parts (CPU ms, mean of {n_steps}; compiled calls per step "
              f"{calls[0] / n_steps:.1f}):", flush=True)
        for part, seconds in spent.items():
            print(f"  {part}: {seconds / n_steps * 1e3:.2f}", flush=True)


def alternate(blocks: int, steps: int, epochs: int, which=("tabular", "digits")) -> None:
    """One logged step of each demo at the defaults, in one process, with and without two of its savings toggled
    step block by step block (the same values logged either way): integrated gradients' first pass in the call of
    the probe's predictions (off: its own call, `fuses_first_pass`) and the bootstrap floors of a step's methods
    resampled together (off: each method its own). Prints the median CPU time per step of each and the compiled
    calls per step; less noisy on a shared machine than comparing two processes."""
    import tb_xai.backend.tensorflow as tf_backend
    from tb_xai import quality as quality_lib

    together = quality_lib.QualityMonitor._floors
    calls = [0]
    original_call = tf_backend._call

    def counted_call(*args, **kwargs):
        calls[0] += 1
        return original_call(*args, **kwargs)

    tf_backend._call = counted_call
    try:
        for key, name, model_fn, data, batch_size in _demo_models(which):
            with tempfile.TemporaryDirectory() as run_dir:
                cb = _trained_at_defaults(run_dir, model_fn, data, batch_size, epochs)
                adapter = cb._adapter
                spent = {False: [], True: []}
                per_step = {}
                step = epochs

                def mode(on):
                    adapter.fuses_first_pass = on
                    quality_lib.QualityMonitor._floors = together if on else (lambda self, observed: {})

                for on in (False, True, False, True):  # warm-up: the fused function's tracing
                    mode(on)
                    cb._log(step)
                    step += 1
                for block in range(2 * blocks):
                    for on in ((False, True) if block % 2 == 0 else (True, False)):
                        mode(on)
                        calls[0] = 0
                        started = time.process_time()
                        for _ in range(steps):
                            cb._log(step)
                            step += 1
                        spent[on].append((time.process_time() - started) / steps)
                        per_step[on] = calls[0] / steps
                cb._writer.close()
            mode(True)
            del adapter.fuses_first_pass
            before, after = statistics.median(spent[False]), statistics.median(spent[True])
            print(f"{name}, defaults, one logged step: CPU {after * 1e3:.2f} ms ({per_step[True]:.1f} compiled calls) "
                  f"against {before * 1e3:.2f} ms ({per_step[False]:.1f}) with the two savings off: "
                  f"{after / before:.3f} (medians of {2 * blocks} blocks of {steps} steps each way)", flush=True)
    finally:
        tf_backend._call = original_call
        quality_lib.QualityMonitor._floors = together


def _trained_at_defaults(run_dir, model_fn, data, batch_size, epochs):
    """A fresh demo model trained `epochs` epochs with the callback at its defaults, logging to `run_dir`; the
    callback returned holds the model and an open writer, ready to log more steps by hand."""
    x, y, probe, labels = data
    keras.utils.set_random_seed(0)
    model = model_fn()
    cb = tb_xai.AttributionCallback(run_dir, probe, labels=labels)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[cb])
    cb.set_model(model)
    cb._writer = cb._new_writer()
    return cb


def _demo_models(which):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "demo"))
    import digits as digits_demo  # noqa: E402
    import tabular as tabular_demo  # noqa: E402

    if "tabular" in which:
        x, y, probe, labels, _, _ = tabular_demo.breast_cancer(32)
        yield "tabular", "breast-cancer MLP", tabular_demo.model, (x, y, probe, labels), 32
    if "digits" in which:
        yield "digits", "digits CNN", digits_demo.model, digits_demo.digits(16), 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--skip-demos", action="store_true")
    parser.add_argument("--demos-only", action="store_true", help="only the demo models")
    parser.add_argument("--demo", choices=["tabular", "digits"], action="append",
                        help="only this demo (repeatable; both by default)")
    parser.add_argument("--demo-epochs", type=int, default=15, help="epochs per demo fit (the demos' 15)")
    parser.add_argument("--demo-defaults-only", action="store_true",
                        help="the demos at the callback's defaults only (not with every epoch or their methods)")
    parser.add_argument("--parts", type=int, default=0, metavar="STEPS",
                        help="only one logged step of each demo at the defaults, in parts (CPU time, compiled calls), "
                             "mean of STEPS steps")
    parser.add_argument("--alternate", type=int, default=0, metavar="STEPS",
                        help="only one logged step of each demo at the defaults, with its first-pass fusion and shared "
                             "floors on and off in alternating blocks of STEPS steps, in one process")
    parser.add_argument("--quick", action="store_true", help="5,000 images per epoch and 3 pairs (overstates the ratio)")
    parser.add_argument("--skip-defaults", action="store_true", help="only the --max-overhead measurement")
    parser.add_argument("--max-overhead", type=float, default=None,
                        help="also measure the CNN workload with this max_overhead")
    args = parser.parse_args()
    if args.quick:
        args.images, args.pairs = 5_000, 3
    if args.parts:
        parts(args.parts, args.demo_epochs, args.demo or ("tabular", "digits"))
        return
    if args.alternate:
        alternate(6, args.alternate, args.demo_epochs, args.demo or ("tabular", "digits"))
        return
    with tempfile.TemporaryDirectory() as log_root:
        if not args.skip_defaults and not args.demos_only:
            cnn_workload(args.images, args.pairs, log_root)
        if args.max_overhead is not None and not args.demos_only:
            budget_workload(args.images, 2 * args.pairs + 2, args.max_overhead, log_root)
        if not args.skip_demos:
            demos(max(3, args.pairs // 2), log_root, args.demo_epochs, args.demo or ("tabular", "digits"),
                  args.demo_defaults_only)


if __name__ == "__main__":
    main()
