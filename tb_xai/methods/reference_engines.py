"""The reference engines: the `shap` and `lime` libraries themselves, on the same features, background,
budget and seed as our batched engine, with the model wrapped as the adapter's compiled batched predict
(never `model.predict`, which is 50-60x slower inside these libraries).

They explain one probe at a time, as the libraries do; they are here to check and to benchmark the batched
engine against, and for users who want the library's own numbers.

A method composes its engine: `KernelShap` holds a `ShapKernelEngine` and `Lime` a `LimeEngine` when built with
`engine="reference"`, and calls its `explain(method, x, target, index)` where the batched engine would run. This
module knows only what every local surrogate offers (its features, background, model outputs), not the method
classes.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from tb_xai.modalities import SEQUENCE, TABULAR, TEXT
from tb_xai.methods.segmentation import as_rgb, features_to_map, segment_groups


class _LibraryEngine:
    """Explains one probe at a time, as the libraries do, each with its own seed from (seed, probe key)."""

    name = "reference"

    def explain(self, method, x: np.ndarray, target: np.ndarray, index: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(len(x)):
            seed = int(np.random.SeedSequence([method.seed, int(index[i])]).generate_state(1)[0])
            rows.append(self.explain_one(method, x[i], i, int(target[i]), seed))
        return np.stack(rows).astype(np.float32)

    def explain_one(self, method, x: np.ndarray, probe: int, target: int, seed: int) -> np.ndarray:
        raise NotImplementedError


class ShapKernelEngine(_LibraryEngine):
    """`shap.KernelExplainer` with `l1_reg=False`; on superpixels, windows and tokens, shap samples the
    coalitions and a coalition's value is computed as in the batched engine (a text's removed tokens take its
    mask id; its padding stays)."""

    def explain_one(self, method, x, probe, target, seed):
        import shap

        if method.modality == TABULAR:
            background = method.background
            if np.allclose(background.weights, background.weights[0]):
                data = background.data
            else:
                from shap.utils._legacy import DenseData

                data = DenseData(background.data, [str(j) for j in range(x.shape[0])], None, background.weights)
            with _seeded_global_numpy(seed):
                explainer = shap.KernelExplainer(_output(method, probe, target), data)
                return np.asarray(
                    explainer.shap_values(x[None], nsamples=method.samples, l1_reg=False, silent=True)
                )[0]
        segments = method.segments(x[None], probes=np.array([probe]))
        k = int(segments.max()) + 1
        if k == 0:  # a text that is all padding
            return np.zeros(segments.shape[1:], dtype=np.float32)
        replacement, weights = method.replacements(x[None], segments)
        groups = segment_groups(x[None], segments)

        def coalition_fn(z):
            masks = (np.asarray(z) > 0.5)[None]
            return method.coalition_values(x[None], masks, np.ones(masks.shape[:2], dtype=bool), groups,
                                           replacement, weights, np.array([target]), probes=np.array([probe]))[0]

        with _seeded_global_numpy(seed):
            explainer = shap.KernelExplainer(coalition_fn, np.zeros((1, k)))
            phi = np.asarray(explainer.shap_values(np.ones((1, k)), nsamples=method.samples, l1_reg=False,
                                                   silent=True))
        return features_to_map(phi, segments)[0]


class LimeEngine(_LibraryEngine):
    """lime's `LimeTabularExplainer` (`discretize_continuous=False`), `LimeImageExplainer` and
    `LimeTextExplainer` (`bow=False`: one feature per token position); lime has no explainer for sequences."""

    def explain_one(self, method, x, probe, target, seed):
        if method.modality == TABULAR:
            return _lime_tabular(method, x, probe, target, seed)
        if method.modality == TEXT:
            return _lime_text(method, x, probe, target, seed)
        if method.modality == SEQUENCE:
            raise ValueError(
                f"{method.name}: lime has no explainer for sequences; explain sequence inputs with "
                "engine='batched'"
            )
        return _lime_image(method, x, probe, target, seed)


def _output(method, probe: int, target: int):
    """The model function the libraries call: rows -> the target output, one compiled batched call, the
    model's other inputs held at probe `probe`'s values."""
    def fn(rows):
        return _probabilities(method, probe)(rows)[:, target]
    return fn


def _probabilities(method, probe: int):
    def fn(rows):
        rows = np.asarray(rows, dtype=np.float32)
        size = method.rows_per_call(int(np.prod(rows.shape[1:])))
        return method.model_outputs(rows, np.full(len(rows), probe), batch_size=size)
    return fn


@contextlib.contextmanager
def _seeded_global_numpy(seed: int):
    """shap draws from numpy's global generator: seed it for one call and restore the user's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _lime_tabular(method, x: np.ndarray, probe: int, target: int, seed: int) -> np.ndarray:
    from lime.lime_tabular import LimeTabularExplainer

    background = method.background
    if not np.allclose(background.weights, background.weights[0]):
        raise ValueError(
            f"{method.name}: lime's LimeTabularExplainer weighs its training rows equally, and this background "
            f"({background.source}) is weighted; use 'probe' or an array of rows with the reference engine"
        )
    d = x.shape[0]
    explainer = LimeTabularExplainer(
        background.data.astype(np.float64), mode="classification", discretize_continuous=False,
        kernel_width=method.width(d), sample_around_instance=method.sample_around_instance,
        random_state=np.random.RandomState(seed),
    )
    explanation = explainer.explain_instance(
        x.astype(np.float64), _probabilities(method, probe), labels=(target,), num_features=d,
        num_samples=method.sample_count(), model_regressor=_ridge(method, seed),
    )
    return _dense(explanation.local_exp[target], d)


def _lime_image(method, x: np.ndarray, probe: int, target: int, seed: int) -> np.ndarray:
    from lime.lime_image import LimeImageExplainer

    if x.shape[-1] not in (1, 3):
        raise ValueError(f"lime's image explainer needs 1 or 3 channels; the probe images have shape {x.shape}")
    if method.background is not None:
        raise ValueError(
            f"{method.name}: lime's image explainer hides superpixels with a fill; the reference engine takes "
            "background='segment_mean', 'mean' or a number"
        )
    segments = method.segments(x[None])[0]
    k = int(segments.max()) + 1
    channels = x.shape[-1]
    predict = _output(method, probe, target)

    def classifier_fn(images):
        # lime works on RGB copies; the model sees its own channel count (gray copies are equal per channel).
        scores = np.zeros((len(images), target + 1))
        scores[:, target] = predict(np.asarray(images)[..., :channels])
        return scores

    explainer = LimeImageExplainer(kernel_width=method.width(k), random_state=np.random.RandomState(seed))
    with contextlib.redirect_stderr(io.StringIO()):  # lime prints a progress bar per probe
        explanation = explainer.explain_instance(
            as_rgb(x).astype(np.float64), classifier_fn, labels=(target,), top_labels=None,
            hide_color=_hide_color(method.fill, x), num_features=k,
            num_samples=method.sample_count(), batch_size=method.sample_count(),
            segmentation_fn=lambda image: segments, model_regressor=_ridge(method, seed),
        )
    return _dense(explanation.local_exp[target], k)[segments]


def _lime_text(method, x: np.ndarray, probe: int, target: int, seed: int) -> np.ndarray:
    """lime's text explainer on the probe's token windows: the document lime perturbs has one word per window
    ("w0 w1 ..."), lime removes words (its own sampling, distance and kernel), and each perturbed document is
    turned back into token ids: a removed window's tokens take the mask id, padding stays."""
    from lime.lime_text import LimeTextExplainer

    segments = method.segments(x[None], probes=np.array([probe]))
    k = int(segments.max()) + 1
    if k == 0:  # a text that is all padding
        return np.zeros(segments.shape[1:], dtype=np.float32)
    removed = "_"
    replacement, weights = method.replacements(x[None], segments)
    groups = segment_groups(x[None], segments)

    def classifier_fn(documents):
        masks = np.array([[word != removed for word in document.split(" ")] for document in documents])[None]
        values = method.coalition_values(x[None], masks, np.ones(masks.shape[:2], dtype=bool), groups,
                                         replacement, weights, np.array([target]), probes=np.array([probe]))[0]
        scores = np.zeros((len(documents), target + 1))
        scores[:, target] = values
        return scores

    # lime's distance is the cosine distance times 100: its kernel width is ours times 100.
    explainer = LimeTextExplainer(kernel_width=100 * method.width(k), feature_selection="none",
                                  split_expression=" ", bow=False, mask_string=removed,
                                  random_state=np.random.RandomState(seed))
    explanation = explainer.explain_instance(
        " ".join(f"w{j}" for j in range(k)), classifier_fn, labels=(target,), num_features=k,
        num_samples=method.sample_count(), model_regressor=_ridge(method, seed),
    )
    return features_to_map(_dense(explanation.local_exp[target], k)[None], segments)[0]


def _hide_color(fill, image: np.ndarray):
    """lime's hide_color for our fill: None is its superpixel mean; "mean" is the image's mean colour."""
    if fill == "segment_mean":
        return None
    if fill == "mean":
        return as_rgb(image).reshape(-1, 3).mean(axis=0)
    return fill


def _ridge(method, seed: int):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=method.ridge, fit_intercept=True, random_state=seed)


def _dense(pairs, size: int) -> np.ndarray:
    out = np.zeros(size)
    for feature, value in pairs:
        out[feature] = value
    return out
