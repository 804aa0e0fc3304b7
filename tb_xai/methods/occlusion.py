"""Occlusion (Zeiler & Fergus, 2014, arXiv:1311.2901): the output drop when a window of the image is hidden."""

from __future__ import annotations

from typing import List, Optional, Union

import numpy as np

from tb_xai.metadata import IMAGE
from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.batching import chunks


class Occlusion(AttributionMethod):
    """Slides a `window` x `window` patch over each image, filled with `fill`, and records how much the
    explained output drops; each pixel gets the mean drop of the windows covering it.

    Cost: one forward pass per window position plus one per probe ((H - window) / stride + 1)^2 + 1; for
    28x28 images, window 4 and stride 2, 170 passes per probe. Host memory: the occluded copies of one
    model batch at a time, never all of a probe's at once (12,321 windows of a 224x224x3 image would be 7 GB).

    Args:
        window: side of the square patch in pixels.
        stride: step between window positions; defaults to half the window.
        fill: a number, or "mean" for each probe image's mean colour.
        name: the logged name.

    Example:
        >>> Occlusion(window=8, stride=4, fill=0.0)
    """

    name = "occlusion"
    requires_gradients = False
    modalities = (IMAGE,)

    def __init__(self, window: int = 4, stride: Optional[int] = None, fill: Union[float, str] = 0.0,
                 name: Optional[str] = None):
        super().__init__(name)
        check_positive_int(window, "window")
        if stride is not None:
            check_positive_int(stride, "stride")
        if not (fill == "mean" or (isinstance(fill, (int, float)) and not isinstance(fill, bool))):
            raise ValueError(f"fill must be a number or 'mean'; received: {fill!r}")
        self.window = int(window)
        self.stride = int(stride) if stride is not None else max(1, self.window // 2)
        self.fill = fill
        self._starts = np.zeros((0, 2), dtype=np.int64)  # (windows, 2): top-left corner of each window
        self._coverage = np.zeros((0, 0))  # (H, W): how many windows cover each pixel

    def config(self):
        return {"window": self.window, "stride": self.stride, "fill": self.fill}

    def attribution_shape(self, input_shape):
        return tuple(input_shape[:2])

    def rows_per_probe(self) -> int:
        return len(self._starts) + 1

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        if len(probe.inputs) != 1 or probe.modality(0) != IMAGE:
            raise ValueError(
                f"{self.name} explains one image input (probes, H, W, C); the probe has shapes "
                f"{[a.shape for a in probe.inputs]}"
            )
        height, width = probe.feature_shape(0)[:2]
        if self.window > min(height, width):
            raise ValueError(f"{self.name}: window {self.window} is larger than the {height}x{width} images")
        starts_r = _starts(height, self.window, self.stride)
        starts_c = _starts(width, self.window, self.stride)
        self._starts = np.array([(r, c) for r in starts_r for c in starts_c], dtype=np.int64)
        coverage = np.zeros((height, width))
        for r, c in self._starts:
            coverage[r:r + self.window, c:c + self.window] += 1
        self._coverage = coverage

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        x = inputs[0].astype(np.float32)
        m, w = len(x), self.window
        if self.fill == "mean":
            fill = x.mean(axis=(1, 2), keepdims=True)
        else:
            fill = np.full((m, 1, 1, 1), self.fill, dtype=np.float32)
        probes = np.arange(m)
        full = self.model.predict([x])[probes, target]
        summed = np.zeros((m,) + self._coverage.shape)
        # Windows in chunks of at most one model batch of occluded rows: host memory stays bounded by the
        # batch size, however many windows an image has.
        for piece in chunks(len(self._starts), max(1, self.model.batch_size // m)):
            starts = self._starts[piece]
            occluded = np.repeat(x[:, None], len(starts), axis=1)  # (probes, windows in the chunk, H, W, C)
            for k, (r, c) in enumerate(starts):
                occluded[:, k, r:r + w, c:c + w] = fill
            out = self.model.predict([occluded.reshape((-1,) + x.shape[1:])])
            drops = full[:, None] - out.reshape(m, len(starts), -1)[probes, :, target]
            for k, (r, c) in enumerate(starts):
                summed[:, r:r + w, c:c + w] += drops[:, k, None, None]
        return [(summed / np.maximum(self._coverage, 1)).astype(np.float32)]


def _starts(size: int, window: int, stride: int) -> List[int]:
    """Window offsets covering every pixel: every `stride`, plus one flush with the far edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts
