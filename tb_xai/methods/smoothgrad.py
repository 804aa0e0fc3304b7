"""SmoothGrad (Smilkov et al., 2017, arXiv:1706.03825)."""

from __future__ import annotations

from typing import List

import numpy as np

from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.methods.coalitions import probe_generator, probe_key


class SmoothGrad(AttributionMethod):
    """The gradient averaged over copies of the input with Gaussian noise added.

    A text input gets its noise in embedding space, at its Embedding layer's output, on the non-padding tokens
    only, with the standard deviation `noise_level` x the range of the probe's token embeddings; a token's
    value is the L2 norm over the embedding dimension of the averaged gradient (with `absolute`, the average of
    each sample's norm), 0 at padding.

    The noise of a probe is drawn from a generator seeded with (seed, a checksum of the probe's values), so
    it is the same at every logged step, for any batch size and any position of the probe in the set:
    changes between steps come from the model, not from the noise. Since the probe set is fixed over
    training, the unit noise is drawn once and kept (up to `noise_cache_mb`), not drawn again every step.

    Args:
        samples: noisy copies per probe.
        noise_level: noise standard deviation as a fraction of each probe's value range (max - min), as in
            the paper (10-20% works best there).
        absolute: average |gradient| instead of the signed gradient.
        seed: seed of the noise.
        noise_cache_mb: memory for the kept noise; probes beyond it draw theirs at every step.
        name: the logged name.
    """

    name = "smoothgrad"

    def __init__(self, samples: int = 25, noise_level: float = 0.15, absolute: bool = False, seed: int = 0,
                 noise_cache_mb: float = 64, name=None):
        super().__init__(name)
        check_positive_int(samples, "samples")
        if not np.isfinite(noise_level) or noise_level < 0:
            raise ValueError(f"noise_level must be a finite number >= 0; received: {noise_level!r}")
        self.samples = int(samples)
        self.noise_level = float(noise_level)
        self.absolute = bool(absolute)
        self.seed = int(seed)
        self._cache_budget = int(noise_cache_mb * 2 ** 20)
        self._noise: dict = {}

    def config(self):
        return {"samples": self.samples, "noise_level": self.noise_level, "absolute": self.absolute,
                "seed": self.seed}

    def rows_per_probe(self) -> int:
        return self.samples

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        m, s = len(target), self.samples
        space = self.space
        points = space.points(inputs)
        noisy = []
        for k, (x, p) in enumerate(zip(inputs, points)):
            if p is None:
                noisy.append(None)
                continue
            flat = p.reshape(m, -1)
            keep = None
            if space.is_text(k):  # noise on the tokens' embeddings; padding stays padding
                keep = ~space.padding(inputs, k)
                flat = np.where(keep[..., None], p, np.nan).reshape(m, -1)
            with np.errstate(invalid="ignore"):
                spread = np.nanmax(flat, axis=1) - np.nanmin(flat, axis=1) if keep is not None \
                    else flat.max(axis=1) - flat.min(axis=1)
            sigma = self.noise_level * np.nan_to_num(spread)
            noise = np.stack([self._unit_noise(k, row, p.shape[1:]) for row in (x if keep is not None else p)])
            noise = noise * sigma.reshape((m, 1) + (1,) * (p.ndim - 1))
            if keep is not None:
                noise = noise * keep[:, None, :, None]
            noisy.append((p[:, None] + noise).reshape((m * s,) + p.shape[1:]))
        rows = [np.repeat(x, s, axis=0) for x in inputs] if space.has_text else inputs
        _, grads = space.gradients(rows, noisy, np.repeat(target, s))
        out = []
        for k, (g, p) in enumerate(zip(grads, points)):
            if g is None:
                out.append(None)
                continue
            g = g.reshape((m, s) + p.shape[1:])
            if space.is_text(k):
                # A token's value: the L2 norm of the (signed or absolute) gradient over the embedding dimension.
                per_sample = np.sqrt(np.square(g).sum(axis=-1, keepdims=True))
                out.append(per_sample.mean(axis=1) if self.absolute else g.mean(axis=1))
            else:
                out.append((np.abs(g) if self.absolute else g).mean(axis=1))
        return space.reduce(out, inputs, how="norm")

    def _unit_noise(self, input_index: int, row: np.ndarray, shape) -> np.ndarray:
        """The unit noise of one probe row, `shape` per sample; drawn from the probe's own values (for a text
        input its token ids, not its embeddings, which training changes)."""
        key = (input_index, probe_key(row))
        noise = self._noise.get(key)
        if noise is None:
            noise = probe_generator(self.seed, *key).standard_normal((self.samples,) + tuple(shape)).astype(np.float32)
            if self._cache_budget >= noise.nbytes:
                self._cache_budget -= noise.nbytes
                self._noise[key] = noise
        return noise
