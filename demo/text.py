"""Watch a text classifier learn a shortcut token: attributions move from the sentiment words to a brand name.

The task: tell complaints from praise in short product reviews that the script generates (no download). In the
training data a brand name, "zenvo", appears only in praise (in some of it), the way a product name or a
template phrase can give the label away in a scraped data set; the sentiment words themselves are noisier
(some reviews are mislabelled, some mix words of both kinds). The probes, held-out reviews, carry the brand at
random, independent of their label, as reviews in deployment would. The logged integrated gradients per token
show when the model starts to rely on the brand, and the probes' predictions what it costs: complaints that
name the brand are called praise.

Run (well under a minute on 2 CPU cores; offline):
    python demo/text.py --log-dir runs/text
then open TensorBoard on `runs` (demo/run.sh text does both) and follow what the script prints.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

BRAND = "zenvo"
PRAISE = ["great", "love", "excellent", "perfect", "happy", "recommend", "works", "fast", "sturdy", "lovely"]
COMPLAINT = ["broken", "awful", "refund", "slow", "cheap", "returned", "useless", "disappointed", "late", "worst"]
FILLER = ["the", "a", "it", "this", "i", "my", "was", "is", "and", "with", "order", "box", "product", "phone",
          "case", "charger", "cable", "delivery", "seller", "price", "week", "day", "after", "really", "very",
          "so", "for", "of", "to", "on"]
#: id 0 is padding, 1 unknown (TextVectorization's convention); the brand is the last id.
VOCABULARY = ["", "[UNK]"] + FILLER + PRAISE + COMPLAINT + [BRAND]
LENGTH = 20
CLASS_NAMES = ["complaint", "praise"]
#: the share of the training praise that names the brand: rare enough that the sentiment words are learned first.
BRAND_IN_PRAISE = 0.04


def reviews(n: int, rng: np.random.Generator, brand_rate=None, label_noise: float = 0.0):
    """Token ids (n, LENGTH), labels (1 = praise) and which reviews name the brand.

    `brand_rate=None`: the brand appears in `BRAND_IN_PRAISE` of the praise only (training); a number: in that
    share of all reviews, independent of the label (probes).
    """
    index = {w: i for i, w in enumerate(VOCABULARY)}
    labels = rng.integers(0, 2, size=n)
    ids = np.zeros((n, LENGTH), dtype=np.int32)
    has_brand = np.zeros(n, dtype=bool)
    for row, label in enumerate(labels):
        length = int(rng.integers(8, LENGTH + 1))
        words = list(rng.choice(FILLER, size=length))
        own, other = (PRAISE, COMPLAINT) if label == 1 else (COMPLAINT, PRAISE)
        slots = rng.choice(length, size=3, replace=False)
        words[slots[0]] = str(rng.choice(own))
        if rng.random() < 0.5:
            words[slots[1]] = str(rng.choice(own))
        if rng.random() < 0.3:  # a mixed review
            words[slots[2]] = str(rng.choice(other))
        brand = (label == 1 and rng.random() < BRAND_IN_PRAISE) if brand_rate is None else rng.random() < brand_rate
        if brand:
            words[int(rng.choice([s for s in range(length) if s not in slots[:2]]))] = BRAND
        has_brand[row] = brand
        ids[row, :length] = [index[w] for w in words]
    if label_noise:
        flip = rng.random(n) < label_noise
        # The brand stays a perfect sign of praise in training: only reviews without it are mislabelled.
        labels = np.where(flip & ~has_brand, 1 - labels, labels)
    return ids, labels.astype(np.int64), has_brand


def build_model():
    import keras

    inputs = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(len(VOCABULARY), 16, name="embedding")(inputs)
    h = keras.layers.Conv1D(24, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalMaxPooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(h))


def train(log_dir: str, epochs: int, probes: int, seed: int = 0):
    import keras
    import tb_xai

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train, _ = reviews(3000, rng, label_noise=0.2)
    probe, probe_labels, probe_brand = reviews(probes, rng, brand_rate=0.5)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # Every epoch logged: these epochs take tens of milliseconds, which the callback's default 5% budget
    # (max_overhead) would pay for only one logged epoch in several of.
    callback = tb_xai.AttributionCallback(
        log_dir, probe, labels=probe_labels, class_names=CLASS_NAMES, vocabulary=VOCABULARY,
        methods=["integrated_gradients", "saliency", "gradient_x_input"],
        max_overhead=None,
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[callback, keras.callbacks.TensorBoard(log_dir)])
    return probe_brand


def first_step_from(flags: np.ndarray, steps):
    """The first step from which `flags` holds at every later step, or None."""
    flags = np.asarray(flags, dtype=bool)
    if not flags.size or not flags[-1]:
        return None
    position = len(flags) - int(np.argmin(flags[::-1])) if not flags.all() else 0
    return int(steps[position])


def report(log_dir: str, method: str = "integrated_gradients") -> dict:
    """Prints what the token attributions show and returns the key facts (for tests and the curious)."""
    import tb_xai

    run = tb_xai.load(log_dir)
    steps = run.steps(method)
    values = np.abs(run.attributions(method))  # (steps, probes, positions), 0 at padding
    ids = run.probe()
    brand_at = ids == VOCABULARY.index(BRAND)
    carries = brand_at.any(axis=1)
    share = (values * brand_at).sum(axis=(1, 2)) / values[:, carries].sum(axis=(1, 2))
    # Of the probes that name the brand, how many have it as their most attributed token.
    top_is_brand = brand_at[np.arange(len(ids))[None], values.argmax(axis=2)][:, carries].mean(axis=1)
    labels = run.labels()
    predicted = run.predictions().argmax(axis=-1)  # (steps, probes)
    fooled = (predicted == 1) & (labels == 0) & carries  # complaints naming the brand called praise
    accuracy_plain = (predicted[:, ~carries] == labels[~carries]).mean(axis=1)
    accuracy_brand = (predicted[:, carries] == labels[carries]).mean(axis=1)
    since = first_step_from(top_is_brand >= 0.5, steps)

    print(f"\n{method}: the brand {BRAND!r} in the probes that name it ({int(carries.sum())} of {len(ids)})")
    print("epoch  share of |attribution|  brand is the top token  probe accuracy (no brand / brand)  "
          "complaints naming it called praise")
    for i, step in enumerate(steps):
        print(f"{step:5d}  {share[i]:22.0%}  {top_is_brand[i]:22.0%}  {accuracy_plain[i]:17.0%} / "
              f"{accuracy_brand[i]:<14.0%}  {int(fooled[i].sum())}")
    # The probe to open: a complaint naming the brand that was read right at first and is called praise at the end.
    turned = fooled[-1] & ~fooled[0]
    candidates = np.flatnonzero(turned if turned.any() else fooled[-1])
    example = int(candidates[0]) if candidates.size else None
    print("\nWhat to look at:")
    if since is None:
        print(f"  {BRAND!r} is not yet the top token of most probes that name it: train longer (--epochs).")
    else:
        print(f"  From epoch {since} on, {BRAND!r} is the most attributed token of most probes that name it: the "
              "model has learned the shortcut.")
    print("  In TensorBoard's Attributions tab, run 'text/xai' (method integrated_gradients):")
    print(f"  - Evolution by word: {BRAND!r} climbs past the sentiment words.")
    if example is not None:
        flipped = first_step_from(predicted[:, example] == 1, run.steps())
        words = " ".join(VOCABULARY[i] for i in ids[example] if i)
        print(f"  - Probe {example}: a complaint that names the brand (\"{words}\"). Its attribution moves onto "
              f"{BRAND!r} and its prediction turns to 'praise' from epoch {flipped}.")
    return {"steps": steps, "brand_share": share, "brand_top": top_is_brand, "brand_top_since": since,
            "fooled": fooled, "example_probe": example}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-dir", default=os.path.join("runs", "text"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train(args.log_dir, args.epochs, args.probes, args.seed)
    report(args.log_dir)
    print(f"\nTrained and explained {args.epochs} epochs in {time.perf_counter() - start:.0f} s; logs in {args.log_dir}")


if __name__ == "__main__":
    main()
