"""LIME (Ribeiro, Singh & Guestrin, 2016, arXiv:1602.04938): a distance-weighted local linear surrogate.

The module is not named `lime` so that it never shadows the `lime` package the reference engine imports.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE, TABULAR, TEXT
from tb_xai.methods.base import check_positive_int
from tb_xai.batching import chunks
from tb_xai.methods.coalitions import probe_generator, standard_normal, uniform_coalitions
from tb_xai.methods.reference_engines import LimeEngine
from tb_xai.methods.surrogate import (
    LocalSurrogate, normal_equations, padded, pipelined, segment_groups, single_threaded_blas,
    solve_normal_equations, weighted_least_squares,
)

#: LIME's own defaults: samples per probe and the kernel width (tabular: times sqrt(features)).
_DEFAULT_SAMPLES = {TABULAR: 5000, IMAGE: 1000, SEQUENCE: 1000, TEXT: 5000}


class Lime(LocalSurrogate):
    """Coefficients of a ridge regression fitted to the model around each probe, weighted by proximity.

    Tabular (as lime's LimeTabularExplainer with `discretize_continuous=False`): samples are drawn from a
    normal with the background's per-feature mean and standard deviation (around the probe instead with
    `sample_around_instance=True`); the regression runs on standardized features, so a coefficient is the
    output change per standard deviation of the feature. Weights: sqrt(exp(-d^2 / width^2)) of the
    standardized Euclidean distance to the probe, width 0.75 * sqrt(features) by default.

    Those samples do not depend on the probe (only the first one, the probe itself, does), so every probe
    shares one draw: the model evaluates `samples - 1` rows once per step instead of once per probe, and
    each probe's regression weighs the shared samples by its own distances. Each probe still sees `samples`
    draws from lime's distribution; only the noise is now common to all probes.

    Images (as LimeImageExplainer): each superpixel is kept with probability 1/2 (the first sample keeps all)
    and hidden ones take the background fill; weights use the cosine distance of the on/off vector to
    all-on, width 0.25 by default. Grayscale works as is. Sequences (probes, T, C) are explained the same way
    over windows of consecutive time steps instead of superpixels.

    Text (probes, T) of token ids (as LimeTextExplainer with `bow=False`): each token position (or window of
    `Segmentation(window=n)` tokens) is a feature; a sample removes a number of them drawn uniformly from 1
    to all, chosen uniformly, and removed tokens take the input's mask id (padding stays padding and gets
    0). Weights: the cosine distance of the on/off vector to all-on, width 0.25 (lime's 25 on its distance
    times 100); 5000 samples by default.

    Multi-input models: each input is explained with the others held at the probe (see `LocalSurrogate`);
    the shared tabular draw is then evaluated once per probe, with that probe's other inputs.

    Cost: forward passes only. Images and sequences: `samples` model rows per probe (1000 by default).
    Tabular: `samples` rows per step shared by all probes, plus one per probe (`samples` per probe with
    `sample_around_instance=True` or on a multi-input model; 5000 by default).

    Args:
        samples: perturbations per probe; None for LIME's default for the modality.
        kernel_width: kernel width; None for LIME's default.
        ridge: L2 penalty of the regression (LIME's Ridge default, 1.0).
        sample_around_instance: tabular only; centre the samples on the probe instead of the background mean.
        background, segmentation, engine, seed, batch_size, name: see `LocalSurrogate`.

    Example:
        >>> Lime(samples=2000, background=x_train[:500], seed=1)
    """

    name = "lime"
    reference_engine = LimeEngine

    def __init__(self, samples: Optional[int] = None, kernel_width: Optional[float] = None, ridge: float = 1.0,
                 sample_around_instance: bool = False, background=None, segmentation=None,
                 engine: str = "batched", seed: int = 0, batch_size: Optional[int] = None,
                 name: Optional[str] = None):
        if samples is not None:
            check_positive_int(samples, "samples", minimum=2, alternative="None")
        if kernel_width is not None and not (np.isfinite(kernel_width) and kernel_width > 0):
            raise ValueError(f"kernel_width must be None or a positive number; received: {kernel_width!r}")
        if not (np.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a number >= 0; received: {ridge!r}")
        super().__init__(samples, background, segmentation, engine, seed, batch_size, name)
        self.kernel_width = kernel_width
        self.ridge = float(ridge)
        self.sample_around_instance = bool(sample_around_instance)
        self._shared: dict = {}  # input index -> its shared tabular samples, for one attribute() call

    def config(self):
        config = super().config()
        config["ridge"] = self.ridge
        return config

    def input_config(self, spec):
        config = super().input_config(spec)
        columns = spec.shape[0] if spec.modality == TABULAR else 0
        config.update({"samples": self.sample_count(spec.modality),
                       "kernel_width": self.width(columns, spec.modality)})
        if spec.modality == TABULAR:
            config["sample_around_instance"] = self.sample_around_instance
        return config

    def _check(self, probe) -> None:
        if self.sample_around_instance and all(spec.modality != TABULAR or spec.held for spec in self.inputs):
            raise ValueError(f"{self.name}: sample_around_instance applies to tabular inputs only; the probe has "
                             f"shapes {[a.shape for a in probe.inputs]}")

    def sample_count(self, modality: Optional[str] = None) -> Optional[int]:
        if self.samples is not None:
            return int(self.samples)
        return _DEFAULT_SAMPLES.get(modality or self.modality)

    def width(self, features: int, modality: Optional[str] = None) -> Optional[float]:
        if self.kernel_width is not None:
            return float(self.kernel_width)
        modality = modality or self.modality
        if modality == TABULAR:
            return 0.75 * float(np.sqrt(features))
        return 0.25 if modality in (IMAGE, SEQUENCE, TEXT) else None

    def samples_per_probe(self, features: int) -> int:
        return self.sample_count()

    def standardization(self):
        """(mean, scale) of the background's features, weighted; a constant feature gets scale 1."""
        data = self.background.data.astype(np.float64)
        mean = self.background.weights @ data
        scale = np.sqrt(self.background.weights @ (data - mean) ** 2)
        scale[scale == 0] = 1.0
        return mean, scale

    def attribute(self, inputs, target):
        self._shared = {}  # the shared samples' outputs belong to the model as it is now
        return super().attribute(inputs, target)

    def _explain_tabular(self, x, target, index):
        if self.sample_around_instance:
            return self._explain_around_instances(x, target, index)
        p, d = x.shape
        mean, scale = self.standardization()
        z, products, rows, outputs = self._shared_samples(d, mean, scale)
        probes = (x - mean) / scale
        with single_threaded_blas():
            squared = (probes ** 2).sum(axis=1)[:, None] + (z ** 2).sum(axis=1)[None, :] - 2 * probes @ z.T
        w = self._kernel(np.sqrt(np.maximum(squared, 0.0)), d)  # (probes, samples - 1)
        w_probe = self._kernel(np.zeros(p), d)  # the probe itself, at distance 0
        if outputs is not None:
            y = outputs[:, target].T
        else:  # other inputs vary with the probe: the shared rows are evaluated with each probe's own
            y = self.predict_rows(np.tile(rows, (p, 1)), np.repeat(target, len(rows)),
                                  probes=np.repeat(np.arange(p), len(rows))).reshape(p, len(rows))
        y_probe = self.predict_rows(x, target, probes=np.arange(p))
        if self.ridge == 0:  # as `normal_equations`: unit weight sums condition the system better
            total = w.sum(axis=1) + w_probe
            w, w_probe = w / total[:, None], w_probe / total
        with single_threaded_blas():
            gram = (w @ products).reshape(p, d, d) + w_probe[:, None, None] * probes[:, :, None] * probes[:, None, :]
            x_sum = w @ z + w_probe[:, None] * probes
            xy = (w * y) @ z + (w_probe * y_probe)[:, None] * probes
        y_sum = (w * y).sum(axis=1) + w_probe * y_probe
        beta, _ = solve_normal_equations(gram, x_sum, w.sum(axis=1) + w_probe, xy, y_sum,
                                         np.ones((p, d), dtype=bool), ridge=self.ridge, intercept=True)
        return beta.astype(np.float32)

    def _shared_samples(self, d: int, mean: np.ndarray, scale: np.ndarray):
        """(standardized samples (S-1, d), their feature products (S-1, d*d), the samples as input rows
        (S-1, d), model outputs (S-1, classes) or None for a multi-input model).

        Drawn from the seed alone and, for a single-input model, evaluated once per `attribute` call, however
        many blocks of probes it is split into.
        """
        index = self._input.index
        if index not in self._shared:
            z = standard_normal(probe_generator(self.seed), (self.sample_count() - 1, d)).astype(np.float64)
            rows = (z * scale + mean).astype(np.float32)
            outputs = None
            if len(self.inputs) == 1:
                outputs = self.model.predict([rows], batch_size=self.rows_per_call(d)).astype(np.float64)
            products = (z[:, :, None] * z[:, None, :]).reshape(len(z), d * d)
            self._shared[index] = (z, products, rows, outputs)
        return self._shared[index]

    def _explain_around_instances(self, x, target, index):
        p, d = x.shape
        s = self.sample_count()
        mean, scale = self.standardization()
        standardized = ((x - mean) / scale).astype(np.float32)
        pieces = list(chunks(p, max(1, self.rows_per_call(d) // s)))
        moments, outputs = [], []

        def sampled(j: int) -> np.ndarray:
            # Everything but the model's outputs is computed here, on the thread that overlaps the model.
            piece = pieces[j]
            z = np.stack([standard_normal(probe_generator(self.seed, i), (s, d)) for i in index[piece]])
            z += standardized[piece, None, :]
            z[:, 0] = standardized[piece]
            delta = z - z[:, :1]
            distances = np.sqrt(np.einsum("psk,psk->ps", delta, delta))
            moments.append(normal_equations(z, self._kernel(distances, d), self.ridge))
            return (z * scale.astype(np.float32) + mean.astype(np.float32)).reshape(-1, d)

        def evaluate(j: int, rows: np.ndarray) -> None:
            block = np.arange(p)[pieces[j]]
            outputs.append(self.predict_rows(rows, np.repeat(target[block], s), probes=np.repeat(block, s))
                           .reshape(-1, s))

        with single_threaded_blas():  # set here, it holds on the thread computing the moments too
            pipelined(sampled, evaluate, len(pieces))
            xy = np.concatenate([
                np.matmul(np.swapaxes(weighted, 1, 2), y.astype(np.float32)[..., None])[..., 0]
                for (weighted, _, _, _, _), y in zip(moments, outputs)
            ])
        y_sum = np.concatenate([(w * y).sum(axis=1) for (_, w, _, _, _), y in zip(moments, outputs)])
        gram, x_sum, total_weight = (np.concatenate([m[i] for m in moments]) for i in (2, 3, 4))
        beta, _ = solve_normal_equations(gram, x_sum, total_weight, xy, y_sum, np.ones((p, d), dtype=bool),
                                         ridge=self.ridge, intercept=True)
        return beta.astype(np.float32)

    def _explain_superpixels(self, x, segments, target, index):
        counts = np.array([int(seg.max()) + 1 for seg in segments])
        s, k_max = self.sample_count(), int(counts.max())
        draw = token_coalitions if self.modality == TEXT else uniform_coalitions
        masks = padded([draw(k, s, probe_generator(self.seed, i)) for k, i in zip(counts, index)], (s, k_max), False)
        replacement, replacement_weights = self.replacements(x, segments)
        y = self.coalition_values(x, masks, np.ones((len(x), s), dtype=bool), segment_groups(x, segments),
                                  replacement, replacement_weights, target)
        kept = masks.sum(axis=2)
        # The cosine distance of the on/off vector to all-on (a text with no token is at distance 1).
        distances = 1.0 - np.sqrt(kept / np.maximum(counts, 1)[:, None])
        features = np.arange(k_max)[None, :] < counts[:, None]
        beta, _ = weighted_least_squares(
            masks, y, self._kernel(distances, k_max), features, ridge=self.ridge, intercept=True
        )
        return beta.astype(np.float32)

    def _kernel(self, distances: np.ndarray, features: int) -> np.ndarray:
        width = self.width(features)
        return np.sqrt(np.exp(-(distances ** 2) / width ** 2))


def token_coalitions(features: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """LIME's text perturbations (LimeTextExplainer): row 0 keeps every token; each other row removes a
    number of tokens drawn uniformly from 1..features, chosen uniformly without replacement."""
    masks = np.ones((samples, features), dtype=bool)
    if features == 0 or samples < 2:
        return masks
    removed = rng.integers(1, features + 1, size=samples - 1)
    ranks = np.argsort(rng.random((samples - 1, features)), axis=1).argsort(axis=1)
    masks[1:] = ranks >= removed[:, None]
    return masks
