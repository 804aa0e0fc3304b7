"""`tb_xai.load(log_dir)`: the logged history as numpy arrays, straight from the event files.

No TensorBoard server, no TensorFlow needed. Every step is read (no sampling); when a step was logged twice
(a resumed run), the later write wins. When a tag changed shape mid-run (another model or probe set), only the
steps shaped like its latest step are served, with a warning naming the others, as the dashboard does
(`tb_xai.aggregate.stack_steps`). A truncated last record, as a run still being written leaves it, is
skipped, and everything before it is read.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from tb_xai import aggregate, findings as findings_lib, metadata, quality as quality_lib


@dataclasses.dataclass
class _Series:
    """One tag's values by step, stacked by `aggregate.stack_steps` once reading is done."""

    tag: str
    info: metadata.TagInfo
    values: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def _stack(self) -> Tuple[np.ndarray, np.ndarray]:
        steps, stacked, dropped = aggregate.stack_steps(self.values)
        if dropped:
            warnings.warn(
                f"{self.tag}: steps {dropped} hold another shape than the latest step {int(steps[-1])} "
                f"({stacked.shape[1:]}), as when the model or the probe changed mid-run; they are left out",
                stacklevel=4,
            )
        return steps, stacked

    def steps(self) -> List[int]:
        """The steps of the latest shape (see `aggregate.stack_steps`), ascending."""
        return self._stack[0].tolist()

    def stacked(self) -> np.ndarray:
        return self._stack[1]


class Run:
    """The tb_xai history of one run directory.

    Example:
        >>> run = tb_xai.load("runs/exp1")
        >>> run.attributions("integrated_gradients").shape   # (steps, probes, *features)
        (20, 32, 30)
    """

    def __init__(self, path: str, series: Dict[str, _Series], scalars: Optional[Dict[str, Dict[int, float]]] = None):
        self.path = path
        self._series = series
        self._scalars = scalars or {}  # the callback's quality figures: tag -> step -> value

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

    # ------------------------------------------------------- the dashboard's aggregates (tb_xai.aggregate)
    def importance(
        self, method: str, input: Optional[str] = None, *, signed: bool = False, target: Optional[int] = None
    ) -> np.ndarray:
        """Per-step feature importance, as the dashboard's evolution view draws it.

        The mean over probes of each probe's map (|attribution|, image channels summed); see
        `tb_xai.aggregate.feature_importance`.

        Args:
            method: a logged method.
            input: the probe input, for multi-input models.
            signed: average signed attributions instead of magnitudes.
            target: only average the probes explained for this class at each step (NaN where none was).

        Returns:
            float64 array (steps, *map_shape): (steps, features) for tabular probes, (steps, H, W) for images.
            The steps are `run.steps(method)`.

        Example:
            >>> run = tb_xai.load("runs/exp1")
            >>> importance = run.importance("integrated_gradients")
            >>> run.feature_names()[importance[-1].argmax()]   # the most important feature at the last step
            'worst radius'
        """
        series = self._attribution_series(method, input)
        targets = self._targets_at(series) if target is not None else None
        importance, _ = aggregate.feature_importance(
            series.stacked(), modality=series.info.modality, signed=signed, targets=targets, target=target
        )
        return importance

    def ranking(self, method: str, input: Optional[str] = None, *, step: int = -1) -> List[str]:
        """Features (tabular names, or "pixel (row, col)" of an image map) by importance at a step, largest first.

        Args:
            method: a logged method.
            input: the probe input, for multi-input models.
            step: a position in `run.steps(method)` (-1: the last logged step).

        Example:
            >>> tb_xai.load("runs/exp1").ranking("saliency")[:3]
            ['worst radius', 'worst texture', 'mean concave points']
        """
        importance = self.importance(method, input)
        if not -len(importance) <= step < len(importance):
            raise IndexError(f"step position {step} is out of range for {len(importance)} logged steps of {method!r}")
        names = self.map_names(method, input)
        flat = importance.reshape(len(importance), -1)[[step]]
        return [names[i] for i in aggregate.importance_order(flat)]

    def stability(
        self, method: str, input: Optional[str] = None, *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
    ) -> Dict[str, np.ndarray]:
        """Rank stability of the importance between consecutive steps and against the last step.

        Args:
            method: a logged method.
            input: the probe input, for multi-input models.
            k: size of the top-k sets compared (clipped to the number of features).
            target: only count probes explained for this class.

        Returns:
            A dict of (steps,) arrays: `steps`, `spearman_previous` and `topk_previous` (NaN at the first step),
            `spearman_last`, `topk_last`; and `k`, the effective k. See `tb_xai.aggregate.rank_stability`.

        Example:
            >>> tb_xai.load("runs/exp1").stability("saliency", k=5)["spearman_previous"][-1]
            0.98
        """
        importance = self.importance(method, input, target=target)
        result = aggregate.rank_stability(importance.reshape(len(importance), -1), k)
        result["steps"] = np.asarray(self.steps(method, input), dtype=np.int64)
        return result

    def agreement(
        self, input: Optional[str] = None, *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
    ) -> List[dict]:
        """Rank agreement of every pair of methods whose maps have one shape, at the steps both logged.

        Args:
            input: the probe input, for multi-input models.
            k: size of the top-k sets compared.
            target: only count probes explained for this class.

        Returns:
            One dict per pair: `methods`, `steps`, `spearman`, `topk` (see `tb_xai.aggregate.method_agreement`).

        Example:
            >>> [pair["methods"] for pair in tb_xai.load("runs/exp1").agreement()]
            [['integrated_gradients', 'saliency']]
        """
        importances = {}
        for method in self.methods:
            try:
                series = self._attribution_series(method, input)
            except KeyError:  # a method that only ever failed
                continue
            importances[method] = (series.steps(), self.importance(method, input, target=target))
        return aggregate.agreement_by_shape(importances, k)

    def to_dataframe(self, methods: Optional[List[str]] = None):
        """Every logged attribution as a tidy pandas DataFrame, one row per (method, input, step, probe, feature).

        Columns: `method`, `input`, `step`, `probe` (index in the probe set), `feature` (the feature's name, "feature 3"
        when none was logged, or "pixel (3, 5)" for row 3, column 5 of an image's attribution; image attributions
        with channels name "3,5,0"), `attribution`, and
        `target` (the class explained for that probe at that step).

        Args:
            methods: the methods to include; all logged ones by default.

        Raises:
            ImportError: pandas is not installed.

        Example:
            >>> df = tb_xai.load("runs/exp1").to_dataframe()
            >>> df[df.step == df.step.max()].groupby("feature").attribution.apply(lambda a: a.abs().mean())
        """
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "Run.to_dataframe needs pandas, which is not installed; install it with `pip install pandas`, "
                "or use the numpy accessors (run.attributions, run.importance)"
            ) from error
        frames = []
        for method in self.methods if methods is None else methods:
            for input in self.inputs:
                try:
                    series = self._attribution_series(method, input)
                except KeyError:  # failures only, or not logged for this input
                    continue
                values = series.stacked()
                steps, probes = values.shape[:2]
                per_probe = values.shape[2:]
                names = aggregate.element_names(per_probe, series.info.modality, series.info.feature_names)
                targets = self._targets_at(series)
                frames.append(pd.DataFrame({
                    "method": method,
                    "input": input,
                    "step": np.repeat(series.steps(), probes * len(names)),
                    "probe": np.tile(np.repeat(np.arange(probes), len(names)), steps),
                    "feature": np.tile(np.asarray(names, dtype=object), steps * probes),
                    "attribution": values.reshape(-1),
                    "target": np.repeat(targets.reshape(-1), len(names)),
                }))
        columns = ["method", "input", "step", "probe", "feature", "attribution", "target"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def map_names(self, method: str, input: Optional[str] = None) -> List[str]:
        """Names of the elements of `run.importance(method)` maps, flattened in C order.

        Tabular probes: the logged feature names (else "feature 0", ...); images: "pixel (row, col)".

        Example:
            >>> run = tb_xai.load("runs/exp1")
            >>> dict(zip(run.map_names("saliency"), run.importance("saliency")[-1].ravel()))
        """
        series = self._attribution_series(method, input)
        shape = aggregate.map_shape(series.stacked().shape[2:], series.info.modality)
        return aggregate.element_names(shape, series.info.modality, series.info.feature_names)

    def _targets_at(self, series: _Series) -> np.ndarray:
        """(steps, probes) targets at the steps of an attribution series; -1 (no class) where none fits."""
        targets = self._series.get(metadata.TARGETS_TAG)
        if targets is None:
            return aggregate.align_targets(series.steps(), [], [], series.stacked().shape[1])
        return aggregate.align_targets(
            series.steps(), targets.steps(), list(targets.stacked()), series.stacked().shape[1]
        )

    # ------------------------------------------------------------- figures and findings (tb_xai.findings)
    def _maps(self, method: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """(steps, |maps| [steps, probes, features] of every input concatenated, their names)."""
        steps, maps, names = None, [], []
        for input in self.inputs:
            try:
                series = self._attribution_series(method, input)
            except KeyError:  # failures only, or not logged for this input
                continue
            if steps is not None and series.steps() != steps.tolist():
                raise ValueError(f"the inputs of {method!r} were logged at different steps; pass one input")
            steps = np.asarray(series.steps(), dtype=np.int64)
            maps.append(findings_lib.as_maps(series.stacked(), series.info.modality))
            prefix = f"{input}: " if len(self.inputs) > 1 else ""
            names += [prefix + n for n in self.map_names(method, input)]
        if steps is None:
            raise KeyError(f"no attributions for method {method!r} in {self.path}; logged methods: {self.methods}")
        return steps, np.concatenate(maps, axis=2), names

    def _logged(self, method: str) -> Dict[str, tuple]:
        """The callback's quality figures of `method`: figure -> (steps, values)."""
        out = {}
        for tag, by_step in self._scalars.items():
            parsed = quality_lib.parse_scalar_tag(tag)
            if parsed and parsed[0] == method:
                ordered = sorted(by_step)
                out[parsed[1]] = (np.array(ordered, dtype=np.int64), np.array([by_step[s] for s in ordered]))
        return out

    def metrics(self, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None,
                ) -> Dict[str, np.ndarray]:
        """The per-step figures of a method: drift, noise floor, concentration, and the callback's quality figures.

        Drift, floor and concentration are computed here from the logged attributions (every input's map
        concatenated), so `k` and `reference_step` can be chosen afresh; faithfulness, seed and sanity figures
        are the ones the callback logged (NaN at steps it did not log them). See `tb_xai.findings` and
        `tb_xai.quality` for what each figure is.

        Args:
            method: a logged method.
            k: top-k size of the nDCG figures.
            reference_step: the step ``ndcg_reference`` compares with (the first logged step by default).

        Returns:
            ``steps`` ([steps] int64) and one float64 array over those steps per figure.

        Example:
            >>> m = tb_xai.load("runs/exp1").metrics("integrated_gradients")
            >>> m["ndcg_reference"][-1] < 0.9, m["deletion_auc"][-1] < m["deletion_auc_random"][-1]
            (False, True)
        """
        steps, maps, names = self._maps(method)
        out = findings_lib.figures(steps, maps, k, reference_step)
        history = findings_lib.MethodHistory(steps, maps, names, self._logged(method))
        for group in ("faithfulness", "seeds", "sanity"):
            for figure in quality_lib.FIGURES[group]:
                out[figure] = history.logged_at(figure)
        return out

    def findings(self, *, thresholds: Optional[findings_lib.Thresholds] = None,
                 reference_step: Optional[int] = None, **threshold_values) -> List[dict]:
        """What changed during training, each event only where it beats the noise floor, ordered by step.

        Kinds: ``topk_enter`` / ``topk_leave`` (a feature enters or leaves the top-k and stays),
        ``drift`` (nDCG@k against the reference step falls below the threshold and the noise floor, with the
        step it starts), ``explanation_changed`` (a probe's map changes while its predicted class does not),
        ``prediction_flipped_explanation_stable``, ``prediction_flip`` (``direction`` wrong_to_right,
        right_to_wrong or changed), ``sanity_failed``, ``methods_disagree``. See `tb_xai.findings`.

        Args:
            thresholds: a `tb_xai.findings.Thresholds`; or give its fields as keywords (``k=5, drift=0.8``).
            reference_step: the step drift is measured from (each method's first logged step by default).

        Returns:
            JSON-ready dicts with ``step``, ``kind``, ``method``, ``feature``, ``probe``, ``value``, ``noise`` and
            ``message`` (None where a key does not apply).

        Example:
            >>> [f["message"] for f in tb_xai.load("runs/shortcut").findings(k=5) if f["kind"] == "topk_enter"][:1]
            ['step 3: pixel (0, 1) entered the top 5 of integrated_gradients (+0.0415 mean |attribution|, noise 0.013)']
        """
        if thresholds is None:
            thresholds = findings_lib.Thresholds(**threshold_values)
        elif threshold_values:
            raise ValueError(f"give thresholds= or threshold keywords, not both; received {sorted(threshold_values)}")
        histories = {}
        for method in self.methods:
            try:
                steps, maps, names = self._maps(method)
            except KeyError:  # a method that only ever failed
                continue
            histories[method] = findings_lib.MethodHistory(steps, maps, names, self._logged(method))
        pred_steps = predictions = None
        if metadata.PREDICTIONS_TAG in self._series:
            pred_steps, predictions = self.steps(), self.predictions()
        return findings_lib.findings(histories, pred_steps, predictions, self.labels(),
                                     self.class_names() if predictions is not None else None,
                                     thresholds=thresholds, reference_step=reference_step)

    def __repr__(self) -> str:
        return f"Run({self.path!r}, methods={self.methods})"


def _event_files(run_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(run_dir, "*tfevents*")))


def _read_run(run_dir: str) -> Tuple[Dict[str, _Series], Dict[str, Dict[int, float]]]:
    series: Dict[str, _Series] = {}
    scalars: Dict[str, Dict[int, float]] = {}  # the callback's quality figures (tb_xai.quality)
    for path in _event_files(run_dir):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if quality_lib.parse_scalar_tag(value.tag) and value.HasField("tensor"):
                    scalars.setdefault(value.tag, {})[event.step] = float(tensor_util.make_ndarray(value.tensor))
                    continue
                if value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME and value.tag not in series:
                    continue
                if value.tag not in series:
                    info = metadata.parse_plugin_metadata(value.metadata.plugin_data.content)
                    if info is None:  # a payload version this release does not know
                        continue
                    series[value.tag] = _Series(value.tag, info)
                series[value.tag].values[event.step] = tensor_util.make_ndarray(value.tensor)
    return series, scalars


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
            series, scalars = _read_run(candidate)
            if series:
                return Run(candidate, series, scalars)
    raise FileNotFoundError(
        f"no tb_xai summaries in {log_dir!r} or {os.path.join(log_dir, subdir)!r}; expected the log_dir "
        "given to tb_xai.AttributionCallback"
    )
