"""`tb_xai.load(log_dir)`: the logged history as numpy arrays, straight from the event files.

No TensorBoard server, no TensorFlow needed. The event files are read into the run model of
:mod:`tb_xai.runmodel` and every question is answered by :mod:`tb_xai.query`, the functions the TensorBoard
plugin calls too, so a notebook and the dashboard give the same numbers and names.

Every step is read (no sampling); when a step was logged twice (a resumed run), the later write wins. When a
tag changed shape mid-run (another model or probe set), only the steps shaped like its latest step are served
(`tb_xai.aggregate.stack_steps`). A record cut short at the end of a file (a run still being written) is
skipped quietly. Damage is skipped and reported in one warning per problem, and every readable step is kept:
a record that fails its checksum (naming the file, the byte offset and the step before it), a tag whose
metadata does not decode or whose payload version is unknown, a tag whose tensors cannot be used (naming the
run, the tag and why). `Run.skipped` lists the tags left out. The run's scalar summaries (the callback's quality
figures, `tb_xai.quality`) are read too, for `Run.metrics` and `Run.findings`.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util import tensor_util

from tb_xai import aggregate, event_records, findings as findings_lib, metadata, query, runmodel
from tb_xai.layout import MapLayout
from tb_xai.runmodel import NotFound


class Run:
    """The tb_xai history of one run directory.

    Example:
        >>> run = tb_xai.load("runs/exp1")
        >>> run.attributions("integrated_gradients").shape   # (steps, probes, *features)
        (20, 32, 30)
    """

    def __init__(self, path: str, run: runmodel.Run):
        self.path = path
        self._run = run

    # ------------------------------------------------------------------------------------- public API
    @property
    def methods(self) -> List[str]:
        """Methods with at least one logged attribution or failure, sorted."""
        return query.methods(self._run)

    @property
    def inputs(self) -> List[str]:
        """Names of the probe's inputs ("input" for a single-input model)."""
        return query.inputs(self._run)

    @property
    def skipped(self) -> Dict[str, str]:
        """tag -> why it was left out, for every tag of the run that could not be used."""
        return self._run.skipped()

    def steps(self, method: Optional[str] = None, input: Optional[str] = None) -> List[int]:
        """Steps (epochs) with attributions of `method`, or with predictions when no method is given."""
        if method is None:
            return self._required(self._run.index.predictions, metadata.PREDICTIONS_TAG).steps.tolist()
        return query.attribution(self._run, method, input)[1].steps.tolist()

    def attributions(self, method: str, input: Optional[str] = None) -> np.ndarray:
        """Array (steps, probes, *attribution_shape), as logged (float32)."""
        return query.attribution(self._run, method, input)[1].values

    def config(self, method: str) -> dict:
        """The parameters the method logged with its attributions."""
        return query.config(self._run, method)

    def feature_names(self, input: Optional[str] = None) -> Optional[List[str]]:
        """The feature names logged with the probe input, None if none were."""
        return list(self._input_info(input).feature_names) or None

    def modality(self, input: Optional[str] = None) -> str:
        """How the input is laid out: one of `tb_xai.modalities.MODALITIES`."""
        return self._input_info(input).modality

    def probe(self, input: Optional[str] = None) -> np.ndarray:
        """The probe inputs as logged, (probes, *features)."""
        name = query.pick_input(input, self._run.index.probes, f"the probe of {self.path}")
        values = query.probe_values(self._run, name)
        if values is None:
            raise NotFound(f"the probe input {name!r} of {self.path} is left out: {self.skipped.get(metadata.probe_tag(name))}")
        return values

    def labels(self) -> Optional[np.ndarray]:
        """The probe labels as logged, None without labels."""
        return query.labels(self._run)

    def predictions(self) -> np.ndarray:
        """(steps, probes, n_outputs) outputs of the explained head at each logged step."""
        return self._required(self._run.index.predictions, metadata.PREDICTIONS_TAG).values

    def targets(self) -> np.ndarray:
        """(steps, probes) class index explained at each logged step."""
        return self._required(self._run.index.targets, metadata.TARGETS_TAG).values

    def class_names(self) -> Optional[List[str]]:
        self._required(self._run.index.predictions, metadata.PREDICTIONS_TAG)
        return query.class_names(self._run) or None

    def failures(self, method: Optional[str] = None) -> List[Tuple[int, str, str]]:
        """(step, method, message) for every step a method failed at."""
        return query.failures(self._run, method)

    # ------------------------------------------------------------------ the dashboard's views (tb_xai.query)
    def importance(
        self, method: str, input: Optional[str] = None, *, signed: bool = False, target: Optional[int] = None,
        by: str = "position",
    ) -> np.ndarray:
        """Per-step feature importance, as the dashboard's evolution view draws it.

        The mean over probes of each probe's map (|attribution|, image channels summed); see
        `tb_xai.aggregate.feature_importance`. On a text input padding is left out: a position's mean is over
        the probes where it is not padding (NaN where it is padding in every probe), and ``by="word"`` gives
        one value per word (`map_names(method, by="word")`): its mean over its non-padding occurrences.

        Args:
            method: a logged method.
            input: the probe input, for multi-input models.
            signed: average signed attributions instead of magnitudes.
            target: only average the probes explained for this class at each step (NaN where none was).
            by: ``"position"`` (one value per map element) or ``"word"`` (text inputs: one value per word).

        Returns:
            float64 array (steps, *map_shape): (steps, features) for tabular probes, (steps, H, W) for images,
            (steps, positions) for text, (steps, words) by word. The steps are `run.steps(method)`.

        Example:
            >>> run = tb_xai.load("runs/exp1")
            >>> importance = run.importance("integrated_gradients")
            >>> run.feature_names()[importance[-1].argmax()]   # the most important feature at the last step
            'worst radius'
        """
        return query.importance(self._run, method, input, signed=signed, target=target, by=by).values.copy()

    def ranking(self, method: str, input: Optional[str] = None, *, step: int = -1, by: str = "position") -> List[str]:
        """Map element names (see `map_names`) by importance at a step, largest first.

        Args:
            method: a logged method.
            input: the probe input, for multi-input models.
            step: a position in `run.steps(method)` (-1: the last logged step).
            by: ``"position"``, or ``"word"`` to rank a text input's words (mean |attribution| over each word's
                non-padding occurrences). Text positions that are padding in every probe are left out.

        Example:
            >>> tb_xai.load("runs/exp1").ranking("saliency")[:3]
            ['worst radius', 'worst texture', 'mean concave points']
            >>> tb_xai.load("runs/text").ranking("integrated_gradients", by="word")[:3]
            ['awful', 'great', 'not']
        """
        return query.ranking(self._run, method, input, position=step, by=by)

    def tokens(self, input: Optional[str] = None) -> np.ndarray:
        """A text input's probes as token strings, object array (probes, positions) of str.

        Padding positions hold their token string too; `padding` says which they are.

        Args:
            input: the text input (None: the run's only one).

        Example:
            >>> run = tb_xai.load("runs/text")
            >>> " ".join(t for t, pad in zip(run.tokens()[0], run.padding()[0]) if not pad)
            'the movie was great'
        """
        return query.text_probe(self._run, input).tokens.copy()

    def padding(self, input: Optional[str] = None) -> np.ndarray:
        """Which positions of a text input are padding, bool array (probes, positions).

        A position is padding when its id is the logged ``padding_id`` or, for a model with a padding-mask
        input, when that input is 0 there. Padding holds attribution 0 and is left out of `importance`,
        `ranking` and the word aggregates.
        """
        return query.text_probe(self._run, input).padding.copy()

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
        result = query.stability(self._run, method, input, k=k, target=target)
        result.pop("input")
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
        return query.agreement(self._run, input, k=k, target=target)["pairs"]

    def layout(self, method: str, input: Optional[str] = None, *, by: str = "position") -> MapLayout:
        """How `method`'s maps are laid out and named (the dashboard's `layout`; see `tb_xai.layout`); by word,
        a text input's words."""
        return query.layout_of(self._run, method, input, by=by)

    def map_names(self, method: str, input: Optional[str] = None, *, by: str = "position") -> List[str]:
        """Names of the elements of `run.importance(method)` maps, flattened in C order.

        The names the dashboard, its CSV export, `ranking`, `to_dataframe` and `tb_xai.plot` show: tabular
        probes the logged feature names (else "feature 0", ...), images "pixel (row, col)", sequences
        "position 3", text "token 3" (see `tb_xai.layout`); with ``by="word"`` a text input's words, in the
        order of `importance(method, by="word")`.

        Example:
            >>> run = tb_xai.load("runs/exp1")
            >>> dict(zip(run.map_names("saliency"), run.importance("saliency")[-1].ravel()))
        """
        return self.layout(method, input, by=by).names()

    def to_dataframe(self, methods: Optional[List[str]] = None):
        """Every logged attribution as a tidy pandas DataFrame, one row per (method, input, step, probe, element).

        Columns: `method`, `input`, `step`, `probe` (index in the probe set), `feature` (the map element's name,
        as `map_names` gives it: a feature name, "feature 3", "pixel (3, 5)", "position 7"), `channel` (the
        channel of an image attribution, whose map sums its channels; -1 where the attribution has no channel
        axis), `attribution`, and `target` (the class explained for that probe at that step, -1 if none). When a
        text input is among them, two more: `token` (the probe's token at that position, its `feature` being
        "token 7"; None for other inputs) and `padding` (whether that position is padding; False elsewhere).

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
            for input_name, ref in sorted(self._run.index.attributions.get(method, {}).items()):
                series = self._run.optional(ref)
                if series is None:
                    continue
                values = series.values
                steps, probes = values.shape[:2]
                layout = query.map_layout(ref, values.shape[2:])
                channels = int(np.prod(values.shape[2:])) // layout.size if layout.size else 1
                names = np.repeat(np.asarray(layout.names(), dtype=object), channels)
                channel = np.tile(np.arange(channels) if channels > 1 or values.ndim - 2 > len(layout.map_shape)
                                  else np.array([-1]), layout.size)
                per_probe = names.size
                targets = query.aligned_targets(self._run, series)
                text = {}
                if ref.info.modality == metadata.TEXT:
                    try:
                        probe = query.text_probe_of(self._run, ref, series)
                        text = {"token": np.tile(probe.tokens.reshape(-1), steps),
                                "padding": np.tile(probe.padding.reshape(-1), steps)}
                    except NotFound:  # tokens that cannot be read (Run.tokens says why): the values stay
                        text = {"token": np.full(values.size, None, dtype=object), "padding": False}
                frames.append(pd.DataFrame({
                    "method": method,
                    "input": input_name,
                    "step": np.repeat(series.steps, probes * per_probe),
                    "probe": np.tile(np.repeat(np.arange(probes), per_probe), steps),
                    "feature": np.tile(names, steps * probes),
                    "channel": np.tile(channel, steps * probes),
                    "attribution": values.reshape(-1),
                    "target": np.repeat(targets.reshape(-1), per_probe),
                    **text,
                }))
        columns = ["method", "input", "step", "probe", "feature", "channel", "attribution", "target"]
        if not frames:
            return pd.DataFrame(columns=columns)
        if any("token" in frame for frame in frames):
            for frame in frames:
                if "token" not in frame:
                    frame["token"] = np.full(len(frame), None, dtype=object)
                    frame["padding"] = False
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------ figures and findings (tb_xai.query, tb_xai.findings)
    def overhead(self) -> Dict[str, np.ndarray]:
        """What the callback cost the training, at each logged step: ``steps``, ``overhead`` (the callback's CPU
        time in the fit so far, setup included, over the training epochs') and ``skipped_epochs`` (with
        `max_overhead`, the scheduled epochs skipped before the step; NaN without a budget).

        Example:
            >>> run = tb_xai.load("runs/exp1")
            >>> float(run.overhead()["overhead"][-1])  # the callback added 4% to training's CPU time
            0.04
        """
        return query.overhead(self._run)

    def metrics(self, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None,
                ) -> Dict[str, np.ndarray]:
        """The per-step figures of a method: drift, noise floor, concentration, and the callback's quality figures.

        Drift, floor and concentration are computed here from the logged attributions (every input the method
        explains, its map concatenated), so `k` and `reference_step` can be chosen afresh; faithfulness, seed
        and sanity figures are the ones the callback logged (NaN at steps it did not log them). See
        `tb_xai.findings` and `tb_xai.quality` for what each figure is.

        Args:
            method: a logged method.
            k: top-k size of the nDCG figures.
            reference_step: the step ``ndcg_reference`` compares with (the first logged step by default).

        Returns:
            ``steps`` ([steps] int64) and one float64 array over those steps per figure.

        Example:
            >>> m = tb_xai.load("runs/exp1").metrics("integrated_gradients")
            >>> m["ndcg_reference"][0]  # the first logged step is the reference
            1.0
        """
        return query.metrics(self._run, method, k=k, reference_step=reference_step)

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
        return query.findings(self._run, thresholds=thresholds, reference_step=reference_step)

    def open_view(self, finding: dict) -> dict:
        """Where the dashboard shows a finding of `findings`: ``{"view", "method", "input", "step", "probe"}``
        (the ``open`` field the plugin adds to each finding; `tb_xai.query.open_view`)."""
        return query.open_view(self._run, finding)

    def probe_summary(self, method: Optional[str] = None, input: Optional[str] = None, *,
                      step: Optional[int] = None) -> dict:
        """Each probe's label, prediction at `step`, whether it flipped, and how much its explanation changed.

        What the dashboard's probe menu shows (`tb_xai.query.probe_summary` has every field).

        Args:
            method: the method whose explanation change is measured (None: ``change`` is None).
            input: that method's input (None: every input it explains).
            step: a logged step of `method` (of the predictions without one); None: the last one.

        Returns:
            ``{"step": int, "probes": [{"probe", "label", "label_name", "prediction", "prediction_name",
            "correct", "flipped", "flip_steps", "change"}, ...]}``.

        Example:
            >>> menu = tb_xai.load("runs/shortcut").probe_summary("integrated_gradients")
            >>> sorted(menu["probes"], key=lambda p: -(p["change"] or 0))[0]["probe"]  # the most changed probe
            7
        """
        return query.probe_summary(self._run, method, input, step=step)

    # -------------------------------------------------------------------------------------- internals
    def _required(self, ref: Optional[runmodel.TagRef], tag: str) -> runmodel.TagSeries:
        if ref is None:
            reason = self._run.index.skipped.get(tag)
            raise NotFound(f"{self.path} has no {tag!r} summaries" + (f" (left out: {reason})" if reason else ""))
        return self._run.usable(ref)

    def _input_info(self, input: Optional[str]) -> metadata.TagInfo:
        name = query.pick_input(input, query.inputs(self._run), f"the probe of {self.path}")
        ref = self._run.index.probes.get(name)
        if ref is None:  # the probe values were not logged (or left out): the attributions carry the same names
            ref = next(by_input[name] for by_input in self._run.index.attributions.values() if name in by_input)
        return ref.info

    def __repr__(self) -> str:
        return f"Run({self.path!r}, methods={self.methods})"


def _event_files(run_dir: str) -> List[str]:
    """The run's event files in the order they were written: by the numbers in their names (creation time, pid,
    the writer's counter), read as numbers, so a 10th writer of one second comes after the 9th."""
    return sorted(glob.glob(os.path.join(run_dir, "*tfevents*")), key=_natural_key)


def _natural_key(path: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", os.path.basename(path))]


def read_run(run_dir: str, name: Optional[str] = None) -> runmodel.Run:
    """The run model of the event files in `run_dir`; every damage is reported in a warning (see module doc)."""
    name = name or run_dir
    contents: Dict[str, bytes] = {}
    points: Dict[str, list] = {}
    problems: Dict[str, str] = {}
    scalar_points: Dict[str, list] = {}  # the callback's quality figures (tb_xai.quality), beside its tags
    for path in _event_files(run_dir):
        records, damage = event_records.read_records(path)
        last_step = None
        damage = list(damage)
        for offset, data in records:
            while damage and damage[0].offset < offset:
                _warn_damage(path, damage.pop(0), last_step)
            try:
                event = event_pb2.Event.FromString(data)
            except Exception as error:  # noqa: BLE001 - a record that passed its checksum but does not parse
                _warn_damage(path, event_records.Damage(offset, len(data), f"a record does not parse ({error})"),
                             last_step)
                continue
            last_step = event.step if event.HasField("summary") else last_step
            for value in event.summary.value:
                known = value.tag in contents
                if value.tag in scalar_points or (
                    not known and value.metadata.plugin_data.plugin_name == scalar_metadata.PLUGIN_NAME
                ):
                    _read_scalar(value, event.step, scalar_points)
                    continue
                if not known and value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
                    continue
                if not known:
                    contents[value.tag] = value.metadata.plugin_data.content
                try:
                    array = tensor_util.make_ndarray(value.tensor)
                except Exception as error:  # noqa: BLE001 - a tensor that does not decode leaves the tag out
                    problems.setdefault(value.tag, f"its tensor at step {event.step} does not decode ({error})")
                    continue
                points.setdefault(value.tag, []).append((event.step, array))
        for rest in damage:
            _warn_damage(path, rest, last_step)
    # A tag's version is its last step and number of writes: it changes whenever the tag is written.
    versions = {tag: (max((s for s, _ in points.get(tag, [])), default=-1), len(points.get(tag, [])))
                for tag in contents}
    index = runmodel.index_tags(name, ((tag, content, versions[tag]) for tag, content in contents.items()))
    series = {}
    for ref in index.refs():
        if ref.tag in problems:
            series[ref.tag] = runmodel.TagSeries.unusable(problems[ref.tag])
        else:
            series[ref.tag] = runmodel.TagSeries.from_points(points.get(ref.tag, []), ref.info.kind, ref.info.modality)
    scalars = {tag: runmodel.scalar_series(points) for tag, points in scalar_points.items()}
    run = runmodel.Run(index, lambda ref: series[ref.tag], scalar_reader=lambda: scalars)
    for tag, reason in run.skipped().items():
        warnings.warn(f"tb_xai.load: run {name!r}: tag {tag!r} is left out: {reason}", stacklevel=3)
    for tag, item in sorted(series.items()):
        if item.dropped:
            warnings.warn(
                f"tb_xai.load: run {name!r}: {tag}: steps {list(item.dropped)} hold another shape than the latest "
                f"step {int(item.steps[-1])} ({item.values.shape[1:]}), as when the model or the probe changed "
                "mid-run; they are left out",
                stacklevel=3,
            )
    return run


def _read_scalar(value, step: int, points: Dict[str, list]) -> None:
    """Keeps a scalar summary's value; one whose tensor does not decode to one number is left out."""
    try:
        number = float(tensor_util.make_ndarray(value.tensor))
    except Exception:  # noqa: BLE001 - a value that does not decode is left out, as a tag's tensor is
        return
    points.setdefault(value.tag, []).append((step, number))


def _warn_damage(path: str, damage: event_records.Damage, last_step: Optional[int]) -> None:
    where = "before the first step" if last_step is None else f"after step {last_step}"
    warnings.warn(
        f"tb_xai.load: {path}: {damage.length} bytes at offset {damage.offset} ({where}) are lost: {damage.reason}; "
        "every readable record before and after them is kept",
        stacklevel=4,
    )


def load(log_dir: str, subdir: str = metadata.DEFAULT_SUBDIR) -> Run:
    """Reads the tb_xai history of a run.

    Args:
        log_dir: the `log_dir` given to the callback, or the run directory itself (`log_dir/xai`).
        subdir: the callback's `subdir`, if it was changed (or the sibling run a second writer used, e.g.
            `xai_2`; the callback's warning names it).

    Raises:
        FileNotFoundError: neither directory holds tb_xai summaries.
    """
    log_dir = os.fspath(log_dir)
    for candidate in (os.path.join(log_dir, subdir), log_dir):
        if os.path.isdir(candidate) and _event_files(candidate):
            run = read_run(candidate)
            if run.index.holds_data or run.index.probes or run.index.skipped:
                return Run(candidate, run)
    raise FileNotFoundError(
        f"no tb_xai summaries in {log_dir!r} or {os.path.join(log_dir, subdir)!r}; expected the log_dir "
        "given to tb_xai.AttributionCallback"
    )


RunLike = Union[Run, str, os.PathLike]


def as_run(run: RunLike) -> Run:
    """`run` itself when it is a loaded `Run`, else `load(run)` of a log directory."""
    if isinstance(run, Run):
        return run
    if isinstance(run, (str, os.PathLike)):
        return load(run)
    raise TypeError(f"run must be a tb_xai.Run or a log directory; received: {run!r}")
