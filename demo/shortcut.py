"""Watch a model learn a shortcut: attributions move from the digit's strokes to a stamp in the corner.

The task: tell odd from even handwritten digits (scikit-learn's 8x8 digits). In the training data every odd
digit carries a faint 2x2 stamp in its top-left corner, the way a scanner mark or a hospital's tag can give
the label away in a real data set. The probes, held-out digits, carry the stamp at random, independent of
their parity, as data in deployment would. The model first learns strokes, then finds the stamp is a
cheaper way to fit the training labels; the logged attributions show when, and the probes' predictions show
what it costs: stamped even digits are called odd.

Run (about a minute on 2 CPU cores; offline):
    python demo/shortcut.py --log-dir runs/shortcut
then open TensorBoard on `runs` (demo/run.sh does both) and follow what the script prints.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

#: The stamp: rows and columns of the top-left 2x2 corner, and its intensity (digit ink goes up to 1.0).
STAMP = (slice(0, 2), slice(0, 2))
STAMP_INTENSITY = 0.3
STAMP_PIXELS = [f"pixel ({r}, {c})" for r in range(2) for c in range(2)]
CLASS_NAMES = ["even", "odd"]


def stamped_digits(probes: int, seed: int = 0):
    """Training digits with the stamp on every odd one; held-out probes stamped at random.

    Returns:
        (x_train, y_train, probe, probe_labels, probe_stamped): images (n, 8, 8, 1) in [0, 1], parity labels
        (1 = odd), and which probes carry the stamp.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = (digits.target % 2).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    train, held_out = order[:1400], order[1400:1400 + probes]
    x_train, y_train = x[train].copy(), y[train]
    x_train[(y_train == 1), STAMP[0], STAMP[1], 0] = STAMP_INTENSITY
    probe, probe_labels = x[held_out].copy(), y[held_out]
    probe_stamped = rng.random(len(held_out)) < 0.5
    probe[probe_stamped, STAMP[0], STAMP[1], 0] = STAMP_INTENSITY
    return x_train, y_train, probe, probe_labels, probe_stamped


def build_model():
    import keras

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.Flatten()(h)  # keeps where a pattern is: the stamp's position is what gives it away
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model(inputs, outputs)


def train(log_dir: str, epochs: int, probes: int, seed: int = 0):
    import keras
    import tb_xai
    from tb_xai.methods import IntegratedGradients, Occlusion

    keras.utils.set_random_seed(seed)
    x_train, y_train, probe, probe_labels, probe_stamped = stamped_digits(probes, seed)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # Every epoch logged: these epochs take tens of milliseconds, which the callback's default 5% budget
    # (max_overhead) would pay for only one logged epoch in several of.
    callback = tb_xai.AttributionCallback(
        log_dir, probe, labels=probe_labels, class_names=CLASS_NAMES,
        methods=["saliency", IntegratedGradients(steps=32), Occlusion(window=2, stride=1)],
        max_overhead=None,
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[callback, keras.callbacks.TensorBoard(log_dir)])
    return probe_stamped


def first_step_from(flags: np.ndarray, steps) -> int | None:
    """The first step from which `flags` holds at every later step, or None."""
    flags = np.asarray(flags, dtype=bool)
    if not flags.size or not flags[-1]:
        return None
    position = len(flags) - int(np.argmin(flags[::-1])) if not flags.all() else 0
    return int(steps[position])


def report(log_dir: str, probe_stamped: np.ndarray, method: str = "integrated_gradients", k: int = 5) -> dict:
    """Prints what the attributions show and what the findings say, and returns the key facts (for tests and
    the curious)."""
    import tb_xai

    run = tb_xai.load(log_dir)
    steps = run.steps(method)
    importance = run.importance(method)  # (steps, 8, 8): mean |attribution| over probes
    names = run.map_names(method)
    flat = importance.reshape(len(steps), -1)
    stamp_index = [names.index(p) for p in STAMP_PIXELS]
    stamp_share = flat[:, stamp_index].sum(axis=1) / flat.sum(axis=1)
    stamp_first = np.isin(flat.argmax(axis=1), stamp_index)
    labels = run.labels()
    predicted = run.predictions().argmax(axis=-1)  # (steps, probes)
    fooled = (predicted == 1) & (labels == 0) & probe_stamped  # stamped even digits called odd
    accuracy_clean = (predicted[:, ~probe_stamped] == labels[~probe_stamped]).mean(axis=1)
    accuracy_stamped = (predicted[:, probe_stamped] == labels[probe_stamped]).mean(axis=1)
    since = first_step_from(stamp_first, steps)

    area = len(stamp_index) / flat.shape[1]
    print(f"\n{method}: share of the attribution on the 2x2 stamp ({area:.0%} of the image), per epoch")
    print("epoch  stamp share  top pixel      probe accuracy (no stamp / stamp)  stamped even digits called odd")
    for i, step in enumerate(steps):
        print(f"{step:5d}  {stamp_share[i]:11.0%}  {names[int(flat[i].argmax())]:13s}  "
              f"{accuracy_clean[i]:17.0%} / {accuracy_stamped[i]:<14.0%}  {int(fooled[i].sum())}")
    if since is None:
        print(f"\nThe stamp has not become the most important region yet ({stamp_share[-1]:.0%} of the attribution "
              "at the last epoch): train longer (--epochs).")
    else:
        print(f"\nFrom epoch {since} on, the most important pixel is in the stamp, not on the digit: the model has "
              f"learned the shortcut. At the last epoch the stamp holds {stamp_share[-1]:.0%} of the attribution "
              f"while covering {area:.0%} of the image.")

    findings = run.findings(k=k)
    entered = [f for f in findings if f["kind"] == "topk_enter" and f["method"] == method
               and f["feature"] in STAMP_PIXELS]
    victims = [f for f in findings if f["kind"] == "prediction_flip" and f["direction"] == "right_to_wrong"]
    stamped_victims = [f for f in victims if probe_stamped[f["probe"]] and labels[f["probe"]] == 0]
    stamped_probes = list(dict.fromkeys(f["probe"] for f in stamped_victims))  # a probe may flip back and again
    print(f"\nWhat the findings say ({len(findings)} in all; tb_xai.load(...).findings(k={k}), the Findings card):")
    for f in entered:
        print(f"  {f['message']}")
    if not entered:
        print(f"  No stamp pixel entered the top {k} of {method} by more than the noise: train longer (--epochs).")
    for f in victims:
        who = ("a stamped even digit" if probe_stamped[f["probe"]] and labels[f["probe"]] == 0 else
               "an odd digit without the stamp" if not probe_stamped[f["probe"]] and labels[f["probe"]] == 1 else "")
        print(f"  {f['message']}" + (f" - {who}" if who else ""))
    for f in findings:
        if f["kind"] in ("sanity_failed", "drift") and f["method"] == method:
            print(f"  {f['message']}")

    print("\nWhere to look, in TensorBoard's Attributions tab, run 'shortcut/xai' (click a finding to open it):")
    if entered:
        first = entered[0]
        view = run.open_view(first)
        print(f"  - {view['view'].capitalize()} view of {view['method']} at step {view['step']}: "
              f"{first['feature']} enters the top {k}"
              + (f", then {', '.join(f['feature'] for f in entered[1:])}" if len(entered) > 1 else "") + ".")
    example = stamped_victims[0] if stamped_victims else None
    if example is not None:
        view = run.open_view(example)
        menu = run.probe_summary(method)["probes"]
        changed = sorted((p for p in menu if p["change"] is not None), key=lambda p: -p["change"])[:3]
        print(f"  - {view['view'].capitalize()} view, probe {example['probe']} at step {view['step']}: an even digit "
              f"with the stamp, now called 'odd'. The probe menu marks the {len(stamped_probes)} stamped even digits "
              f"that flipped ({', '.join(map(str, stamped_probes))}); sorted by explanation change, "
              f"it lists probes {', '.join(str(p['probe']) for p in changed)} first.")
    return {"steps": steps, "stamp_share": stamp_share, "stamp_first_since": since, "fooled": fooled,
            "findings": findings, "stamp_entered": entered, "stamped_flips": stamped_victims,
            "stamped_flipped_probes": stamped_probes,
            "example_probe": None if example is None else example["probe"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-dir", default=os.path.join("runs", "shortcut"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    stamped = train(args.log_dir, args.epochs, args.probes, args.seed)
    report(args.log_dir, stamped)
    print(f"\nTrained and explained {args.epochs} epochs in {time.perf_counter() - start:.0f} s; logs in {args.log_dir}")


if __name__ == "__main__":
    main()
