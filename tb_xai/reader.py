"""`tb_xai.load(log_dir)`: the logged history as numpy arrays, straight from the event files.

No TensorBoard server, no TensorFlow needed. Every step is read (no sampling); when a step was logged twice
(a resumed run), the later write wins. A truncated last record, as a run still being written leaves it, is
skipped, and everything before it is read.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from tb_xai import metadata


@dataclasses.dataclass
class _Series:
    info: metadata.TagInfo
    values: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    def steps(self) -> List[int]:
        return sorted(self.values)

    def stacked(self) -> np.ndarray:
        return np.stack([self.values[s] for s in self.steps()]) if self.values else np.zeros((0,))


class Run:
    """The tb_xai history of one run directory.

    Example:
        >>> run = tb_xai.load("runs/exp1")
        >>> run.attributions("integrated_gradients").shape   # (steps, probes, *features)
        (20, 32, 30)
    """

    def __init__(self, path: str, series: Dict[str, _Series]):
        self.path = path
        self._series = series

    # -------------------------------------------------------------------------------------- lookups
    def _by_kind(self, kind: int) -> Dict[str, _Series]:
        return {tag: s for tag, s in self._series.items() if s.info.kind == kind}

    def _attribution_series(self, method: str, input: Optional[str]) -> _Series:
        if method not in self.methods:
            raise KeyError(f"no attributions for method {method!r} in {self.path}; logged methods: {self.methods}")
        inputs = self.inputs
        if input is None:
            if len(inputs) > 1:
                raise ValueError(f"the probe has inputs {inputs}; choose one with input=...")
            input = inputs[0]
        tag = metadata.attribution_tag(method, input)
        if tag not in self._series:
            raise KeyError(f"no attributions for input {input!r} of {method!r}; inputs: {inputs}")
        return self._series[tag]

    def _single(self, tag: str) -> _Series:
        if tag not in self._series:
            raise KeyError(f"{self.path} has no {tag!r} summaries")
        return self._series[tag]

    # ------------------------------------------------------------------------------------- public API
    @property
    def methods(self) -> List[str]:
        """Methods with at least one logged attribution or failure, sorted."""
        kinds = (metadata.ATTRIBUTION, metadata.FAILURE)
        return sorted({s.info.method for s in self._series.values() if s.info.kind in kinds})

    @property
    def inputs(self) -> List[str]:
        """Names of the probe's inputs ("input" for a single-input model)."""
        return [s.info.input_name for s in self._by_kind(metadata.PROBE).values()]

    def steps(self, method: Optional[str] = None, input: Optional[str] = None) -> List[int]:
        """Steps (epochs) with attributions of `method`, or with predictions when no method is given."""
        if method is None:
            return self._single(metadata.PREDICTIONS_TAG).steps()
        return self._attribution_series(method, input).steps()

    def attributions(self, method: str, input: Optional[str] = None) -> np.ndarray:
        """float32 array (steps, probes, *attribution_shape)."""
        return self._attribution_series(method, input).stacked()

    def config(self, method: str) -> dict:
        """The parameters the method logged with its attributions."""
        return dict(self._attribution_series(method, None if len(self.inputs) == 1 else self.inputs[0]).info.config)

    def feature_names(self, input: Optional[str] = None) -> Optional[List[str]]:
        series = self._probe_series(input)
        return list(series.info.feature_names) or None

    def modality(self, input: Optional[str] = None) -> str:
        return self._probe_series(input).info.modality

    def _probe_series(self, input: Optional[str]) -> _Series:
        probes = {s.info.input_name: s for s in self._by_kind(metadata.PROBE).values()}
        if input is None:
            if len(probes) != 1:
                raise ValueError(f"the probe has inputs {sorted(probes)}; choose one with input=...")
            return next(iter(probes.values()))
        if input not in probes:
            raise KeyError(f"no probe input {input!r}; inputs: {sorted(probes)}")
        return probes[input]

    def probe(self, input: Optional[str] = None) -> np.ndarray:
        """The probe inputs as logged, (probes, *features)."""
        series = self._probe_series(input)
        return series.values[series.steps()[-1]]

    def labels(self) -> Optional[np.ndarray]:
        series = self._series.get(metadata.LABELS_TAG)
        return None if series is None else series.values[series.steps()[-1]]

    def predictions(self) -> np.ndarray:
        """(steps, probes, n_outputs) outputs of the explained head at each logged step."""
        return self._single(metadata.PREDICTIONS_TAG).stacked()

    def targets(self) -> np.ndarray:
        """(steps, probes) class index explained at each logged step."""
        return self._single(metadata.TARGETS_TAG).stacked()

    def class_names(self) -> Optional[List[str]]:
        return list(self._single(metadata.PREDICTIONS_TAG).info.class_names) or None

    def failures(self, method: Optional[str] = None) -> List[Tuple[int, str, str]]:
        """(step, method, message) for every step a method failed at."""
        out = []
        for series in self._by_kind(metadata.FAILURE).values():
            if method is None or series.info.method == method:
                for step in series.steps():
                    message = series.values[step].reshape(-1)[0]
                    out.append((step, series.info.method, message.decode("utf-8", "replace")))
        return sorted(out)

    def __repr__(self) -> str:
        return f"Run({self.path!r}, methods={self.methods})"


def _event_files(run_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(run_dir, "*tfevents*")))


def _read_run(run_dir: str) -> Dict[str, _Series]:
    series: Dict[str, _Series] = {}
    for path in _event_files(run_dir):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME and value.tag not in series:
                    continue
                if value.tag not in series:
                    info = metadata.parse_plugin_metadata(value.metadata.plugin_data.content)
                    if info is None:  # a payload version this release does not know
                        continue
                    series[value.tag] = _Series(info)
                series[value.tag].values[event.step] = tensor_util.make_ndarray(value.tensor)
    return series


def load(log_dir: str, subdir: str = metadata.DEFAULT_SUBDIR) -> Run:
    """Reads the tb_xai history of a run.

    Args:
        log_dir: the `log_dir` given to the callback, or the run directory itself (`log_dir/xai`).
        subdir: the callback's `subdir`, if it was changed.

    Raises:
        FileNotFoundError: neither directory holds tb_xai summaries.
    """
    log_dir = os.fspath(log_dir)
    for candidate in (os.path.join(log_dir, subdir), log_dir):
        if os.path.isdir(candidate) and _event_files(candidate):
            series = _read_run(candidate)
            if series:
                return Run(candidate, series)
    raise FileNotFoundError(
        f"no tb_xai summaries in {log_dir!r} or {os.path.join(log_dir, subdir)!r}; expected the log_dir "
        "given to tb_xai.AttributionCallback"
    )
