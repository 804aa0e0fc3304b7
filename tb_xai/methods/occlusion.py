"""Occlusion (Zeiler & Fergus, 2014, arXiv:1311.2901): the output drop when a window of the input is hidden."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple, Union

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE, TABULAR, TEXT
from tb_xai.methods.base import AttributionMethod, check_positive_int, perturbation_map_shape
from tb_xai.batching import chunks


@dataclasses.dataclass
class _Windows:
    """The windows slid over one probe input: slices of its map axes, and how many windows cover each element."""

    index: int
    modality: str
    slices: List[Tuple[slice, ...]]
    coverage: np.ndarray  # the input's map shape: (H, W), (T,) or (features,)
    mask_id: Optional[int] = None  # what a text input's occluded tokens take


class Occlusion(AttributionMethod):
    """Slides a window over each input, filled with `fill`, and records how much the explained output drops;
    each element of the map gets the mean drop of the windows covering it.

    Images (probes, H, W, C): `window` x `window` patches, an (H, W) map. Sequences (probes, T, C): windows
    of `window` consecutive time steps (along the first axis), a (T,) map. Tabular inputs (probes, features):
    one feature at a time (columns have no neighbours to share a window with), a (features,) map.
    Text (probes, T) of token ids: windows of `window` consecutive token positions every `stride`, a (T,) map;
    the occluded tokens take the input's mask id (whatever `fill`, which applies to the other inputs), and
    padding positions are never occluded and get exactly 0. Held inputs (a padding mask, segment ids) keep
    the probe's values, so an occluded token keeps its padding-mask value, and get no map (None).
    Multi-input models: each input is occluded in turn with the others held at the probe, one map per input.

    Cost: one forward pass per window position plus one per probe; for 28x28 images, window 4 and stride 2,
    ((28 - 4) / 2 + 1)^2 + 1 = 170 passes per probe; a multi-input model adds each input's windows. Host
    memory: the occluded copies of one model batch at a time, never all of a probe's at once (12,321 windows
    of a 224x224x3 image would be 7 GB).

    Args:
        window: side of the square patch in pixels, the time steps of a sequence window, or the tokens of a
            text window.
        stride: step between window positions; defaults to half the window.
        fill: a number, or "mean" for each probe image's mean colour (a sequence's mean per channel); tabular
            inputs need a number.
        name: the logged name.

    Example:
        >>> Occlusion(window=8, stride=4, fill=0.0)
    """

    name = "occlusion"
    requires_gradients = False
    modalities = (TABULAR, IMAGE, SEQUENCE, TEXT)

    def __init__(self, window: int = 4, stride: Optional[int] = None, fill: Union[float, str] = 0.0,
                 name: Optional[str] = None):
        super().__init__(name)
        check_positive_int(window, "window")
        if stride is not None:
            check_positive_int(stride, "stride")
        if not (fill == "mean" or (isinstance(fill, (int, float, np.floating, np.integer))
                                   and not isinstance(fill, bool) and np.isfinite(fill))):
            raise ValueError(f"fill must be a finite number or 'mean'; received: {fill!r}")
        self.window = int(window)
        self.stride = int(stride) if stride is not None else max(1, self.window // 2)
        self.fill = fill
        self._windows: List[_Windows] = []

    def config(self):
        config = {"window": self.window, "stride": self.stride, "fill": self.fill}
        texts = [w for w in self._windows if w.mask_id is not None]
        for w in texts:
            config["mask_id" if len(texts) == 1 else f"{self.probe.names[w.index]}/mask_id"] = w.mask_id
        return config

    def attribution_shape(self, input_shape):
        return perturbation_map_shape(input_shape)

    def rows_per_probe(self) -> int:
        return sum(len(w.slices) for w in self._windows) + 1

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        self._windows = [self._windows_of(probe, i) for i in range(len(probe.inputs)) if probe.explained(i)]

    def _windows_of(self, probe, i: int) -> _Windows:
        modality, shape, name = probe.modality(i), probe.feature_shape(i), probe.names[i]
        if modality == TABULAR:
            if self.fill == "mean":
                raise ValueError(
                    f"{self.name}: fill='mean' is an image's mean colour or a sequence's mean per channel; "
                    f"tabular input {name!r} needs a number"
                )
            slices = [(slice(j, j + 1),) for j in range(shape[0])]
        elif modality == IMAGE:
            height, width = shape[:2]
            if self.window > min(height, width):
                raise ValueError(
                    f"{self.name}: window {self.window} is larger than the {height}x{width} images of input {name!r}"
                )
            slices = [(slice(r, r + self.window), slice(c, c + self.window))
                      for r in _starts(height, self.window, self.stride)
                      for c in _starts(width, self.window, self.stride)]
        else:
            if self.window > shape[0]:
                what = "tokens of text" if modality == TEXT else "steps of sequence"
                raise ValueError(
                    f"{self.name}: window {self.window} is longer than the {shape[0]} {what} input {name!r}"
                )
            slices = [(slice(t, t + self.window),) for t in _starts(shape[0], self.window, self.stride)]
        coverage = np.zeros(perturbation_map_shape(shape, modality))
        for window in slices:
            coverage[window] += 1
        mask_id = int(probe.text[name].mask_id) if modality == TEXT else None
        return _Windows(i, modality, slices, coverage, mask_id)

    def attribute(self, inputs, target):
        """One map per explained input; None for a held input (a padding mask, segment ids)."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        out: List[Optional[np.ndarray]] = [None] * len(inputs)
        for windows, m in zip(self._windows, self._attribute([np.asarray(a) for a in inputs], np.asarray(target))):
            out[windows.index] = m
        return out

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        # All probes at once: the model's calls are full batches of (window, probe) rows whatever the number of
        # probes, and the probes' own outputs take one pass.
        full = self.model.predict(inputs)[np.arange(len(target)), target]
        return [self._occlude(inputs, windows, full, target) for windows in self._windows]

    def _occlude(self, inputs: List[np.ndarray], windows: _Windows, full: np.ndarray, target: np.ndarray):
        """(probes, *map) mean output drop over the windows covering each element of input `windows.index`."""
        x = inputs[windows.index]
        m, n = len(x), len(windows.slices)
        map_axes = windows.coverage.ndim
        padding = None
        if windows.mask_id is not None:  # a text: its tokens take the mask id, its padding is never touched
            padding = dataclasses.replace(self.probe, inputs=list(inputs)).padding(windows.index)
            fill = np.full(x.shape, windows.mask_id, dtype=x.dtype)
            fill[padding] = x[padding]
        elif self.fill == "mean":  # per probe, per channel: the mean over the map axes
            fill = x.astype(np.float32).mean(axis=tuple(range(1, 1 + map_axes)), keepdims=True)
        else:
            fill = np.full((m,) + (1,) * (x.ndim - 1), self.fill, dtype=np.float32)
        # Row r of the occluded rows is window r // m on probe r % m; they go through the model in calls of one
        # model batch, each built by slice assignments into one buffer (per model input: held inputs keep the
        # probe's values). Host memory stays at one batch, however many windows and probes there are.
        size = max(1, self.model.batch_size)
        buffers = [np.empty((min(size, n * m),) + a.shape[1:], dtype=a.dtype) for a in inputs]
        drops = np.empty(n * m)  # float32 differences, exact in float64
        for piece in chunks(n * m, size):
            arrays = [b[:piece.stop - piece.start] for b in buffers]
            for k in range(piece.start // m, (piece.stop - 1) // m + 1):  # the windows this call holds
                lo, hi = max(piece.start, k * m) - k * m, min(piece.stop, (k + 1) * m) - k * m  # their probes
                rows = slice(k * m + lo - piece.start, k * m + hi - piece.start)
                for a, held in zip(arrays, inputs):
                    a[rows] = held[lo:hi]
                window = (rows,) + windows.slices[k]
                arrays[windows.index][window] = fill[lo:hi] if padding is None else fill[(slice(lo, hi),) + window[1:]]
            probes = np.arange(piece.start, piece.stop) % m
            drops[piece] = full[probes] - self.model.predict(arrays)[np.arange(len(probes)), target[probes]]
        drops = drops.reshape(n, m)
        summed = np.zeros((m,) + windows.coverage.shape)
        for k, window in enumerate(windows.slices):
            summed[(slice(None),) + window] += drops[k].reshape((m,) + (1,) * map_axes)
        out = (summed / np.maximum(windows.coverage, 1)).astype(np.float32)
        if padding is not None:
            out[padding] = 0.0
        return out


def _starts(size: int, window: int, stride: int) -> List[int]:
    """Window offsets covering every element: every `stride`, plus one flush with the far edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts
