"""Superpixels, time windows and token windows: the interpretable features KernelSHAP and LIME switch on and
off in an image, a sequence or a text.

A segmentation maps an (H, W, C) image to an (H, W) map of integer labels 0..K-1, a (T, C) sequence to a
(T,) map of contiguous windows of time steps, and a text's (T,) token ids to windows of consecutive tokens
with its padding positions labelled -1 (padding is never a feature). Grayscale (C == 1) images are segmented as they are by SLIC and
the patch grid, and as RGB copies by quickshift (which needs colour).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from tb_xai.methods.base import check_positive_int

_ALGORITHMS = ("slic", "quickshift", "grid")
#: Windows a sequence is split into when no window length is given.
_WINDOWS_PER_SEQUENCE = 16


class Segmentation:
    """Splits images into superpixels and sequences into windows of time steps.

    Args:
        algorithm: "slic" (skimage SLIC), "quickshift" (skimage quickshift, LIME's default), "grid" (a regular
            grid of `patch` x `patch` squares), or a function (H, W, C) image -> (H, W) integer labels.
        patch: side of a grid square in pixels ("grid" only).
        window: time steps per window of a (T, C) sequence input; None gives windows of ceil(T / 16) steps
            (at most 16 windows, the last one possibly shorter). Sequences are always split into contiguous
            windows, whatever `algorithm` (which applies to images). On a text input, the tokens per
            window; None: every token is a feature of its own.
        **params: passed to the skimage function; SLIC defaults to n_segments=min(50, pixels / 8) and a
            compactness suited to the image's colour space, quickshift to LIME's kernel_size=4, max_dist=200, ratio=0.2.

    Example:
        >>> segments = Segmentation("grid", patch=7)(np.zeros((28, 28, 1)))
        >>> int(segments.max()) + 1
        16
    """

    def __init__(self, algorithm: Union[str, Callable[[np.ndarray], np.ndarray]] = "slic", patch: int = 4,
                 window: Optional[int] = None, **params: Any):
        if not callable(algorithm) and algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {_ALGORITHMS} or a function; received: {algorithm!r}")
        check_positive_int(patch, "patch")
        if window is not None:
            check_positive_int(window, "window", alternative="None")
        self.algorithm = algorithm
        self.patch = int(patch)
        self.window = None if window is None else int(window)
        self.params = params
        self._cache: Dict[bytes, np.ndarray] = {}

    def config(self) -> Dict[str, Any]:
        name = self.algorithm if isinstance(self.algorithm, str) else getattr(self.algorithm, "__name__", "custom")
        config: Dict[str, Any] = {"segmentation": name}
        if name == "grid":
            config["patch"] = self.patch
        config.update({f"segmentation_{k}": v for k, v in self.params.items()})
        return config

    def window_length(self, steps: int) -> int:
        """Time steps per window of a sequence of `steps` steps."""
        if self.window is not None:
            return self.window
        return max(1, -(-steps // _WINDOWS_PER_SEQUENCE))

    def sequence_config(self, steps: int) -> Dict[str, Any]:
        return {"segmentation": "window", "segmentation_window": self.window_length(steps)}

    def windows(self, steps: int) -> np.ndarray:
        """(steps,) int32 labels of consecutive windows of `window_length(steps)` time steps (the last may be
        shorter)."""
        return (np.arange(steps) // self.window_length(steps)).astype(np.int32)

    def token_window(self) -> int:
        """Tokens per interpretable feature of a text input (1 unless `window` is given)."""
        return 1 if self.window is None else self.window

    def token_config(self) -> Dict[str, Any]:
        return {"segmentation": "tokens", "segmentation_window": self.token_window()}

    def tokens(self, padding: np.ndarray) -> np.ndarray:
        """(P, T) int32 labels of texts whose padding positions are `padding` (P, T) bool: windows of
        `token_window()` consecutive non-padding tokens, numbered 0..K-1 per text, and -1 at padding."""
        padding = np.asarray(padding, dtype=bool)
        order = np.cumsum(~padding, axis=1) - 1  # each token's position among the text's own tokens
        return np.where(padding, -1, order // self.token_window()).astype(np.int32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W) int32 labels 0..K-1 of one (H, W, C) image; the same image is segmented once."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"segmentation needs an (H, W, C) image with C in 1, 3 or 4; received shape {image.shape}")
        key = hashlib.blake2b(np.ascontiguousarray(image).tobytes() + str(image.shape).encode(), digest_size=16)
        key = key.digest()
        if key not in self._cache:
            labels = self._segment(image)
            if labels.shape != image.shape[:2]:
                raise ValueError(
                    f"segmentation returned labels of shape {labels.shape} for an image of shape {image.shape}; "
                    f"expected {image.shape[:2]}"
                )
            self._cache[key] = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
        return self._cache[key]

    def _segment(self, image: np.ndarray) -> np.ndarray:
        if callable(self.algorithm):
            return np.asarray(self.algorithm(image))
        if self.algorithm == "grid":
            return grid_segments(image.shape[:2], self.patch)
        from skimage import segmentation

        unit = _unit_range(image[..., :3].astype(np.float64))
        if self.algorithm == "slic":
            # About 8 pixels a superpixel at least: on small images (8x8 digits) 50 segments would be single
            # pixels, and a superpixel's mean colour would then hide nothing.
            size = image.shape[0] * image.shape[1]
            params = {"n_segments": min(50, max(4, size // 8)), "start_label": 0, **self.params}
            if unit.shape[-1] == 1:
                params.setdefault("compactness", 0.1)
                return segmentation.slic(unit[..., 0], channel_axis=None, **params)
            params.setdefault("compactness", 10.0)
            return segmentation.slic(unit, channel_axis=-1, **params)
        params = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, "rng": 0, **self.params}
        return segmentation.quickshift(as_rgb(unit), **params)


def grid_segments(shape: Tuple[int, int], patch: int) -> np.ndarray:
    """Labels of a regular grid of `patch` x `patch` squares (edge squares may be smaller)."""
    rows = np.arange(shape[0]) // patch
    cols = np.arange(shape[1]) // patch
    return (rows[:, None] * (cols.max() + 1) + cols[None, :]).astype(np.int32)


def segment_groups(x: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(P, D) segment of each flattened element of (P, H, W, C) images with (P, H, W) superpixels, of
    (P, T, ...) sequences with (P, T) windows, or of (P, T) texts with (P, T) token windows (-1: padding)."""
    expanded = segments.reshape(segments.shape + (1,) * (x.ndim - segments.ndim))
    return np.broadcast_to(expanded, x.shape).reshape(len(x), -1)


def features_to_map(coefficients: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each element's feature coefficient: (P, K_max) coefficients on (P, *map) segments, 0 where a segment
    is -1 (a text's padding)."""
    flat = segments.reshape(len(segments), -1)
    if coefficients.shape[1] == 0:
        return np.zeros(segments.shape, dtype=coefficients.dtype)
    out = np.take_along_axis(coefficients, np.maximum(flat, 0), axis=1)
    return np.where(flat < 0, 0, out).reshape(segments.shape).astype(coefficients.dtype)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) copy of an (H, W, 1) grayscale or (H, W, 3|4) colour image (alpha dropped)."""
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def segment_means(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """`image` with every superpixel filled with its mean colour (LIME's default for a hidden superpixel), or
    a sequence with every window filled with its mean per channel."""
    k = int(segments.max()) + 1
    labels = segments.reshape(-1)
    flat = image.reshape(len(labels), -1).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=flat[:, c], minlength=k) for c in range(flat.shape[1])], axis=1)
    means = sums / np.bincount(labels, minlength=k)[:, None]
    return means[labels].reshape(image.shape).astype(image.dtype)


def _unit_range(image: np.ndarray) -> np.ndarray:
    """The image scaled to [0, 1], so skimage's defaults (which assume that range) fit any input scaling."""
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def as_segmentation(value: Optional[Union[str, Segmentation, Callable]]) -> Segmentation:
    """A `Segmentation` from an algorithm name, a function, or a `Segmentation`."""
    if isinstance(value, Segmentation):
        return value
    return Segmentation("slic" if value is None else value)
