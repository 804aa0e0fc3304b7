"""Every question asked of a run, answered once for ``tb_xai.load`` and the TensorBoard plugin.

The functions here take a :class:`tb_xai.runmodel.Run` (from event files or from TensorBoard's data provider)
and return numpy arrays and plain values; `tb_xai.reader.Run` wraps them for notebooks, the plugin's routes
turn them into JSON. The numbers come from :mod:`tb_xai.aggregate` (the figures and findings from
:mod:`tb_xai.findings`), the names from :mod:`tb_xai.layout`.
Lookups raise :class:`~tb_xai.runmodel.NotFound` (a ``KeyError``) or :class:`~tb_xai.runmodel.BadQuery` (a
``ValueError``) with a message naming the bad value and what is there.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tb_xai import aggregate, findings as findings_lib, layout as layouts, quality as quality_lib
from tb_xai.runmodel import BadQuery, NotFound, Run, TagRef, TagSeries

ALL_STEPS = (None, None)


# ---- lookups ------------------------------------------------------------------------------------------


def methods(run: Run) -> list:
    """Methods with at least one usable attribution or failure tag, sorted (see `Run.skipped` for the rest)."""
    usable = lambda ref: run.describe(ref).problem is None  # noqa: E731
    attributed = {m for m, by_input in run.index.attributions.items() if any(map(usable, by_input.values()))}
    failed = {m for m, ref in run.index.failures.items() if usable(ref)}
    return sorted(attributed | failed)


def inputs(run: Run) -> list:
    """The probe's inputs: those whose probe values were logged (as listed), then any other attributed one."""
    logged = list(run.index.probes)
    attributed = {name for by_input in run.index.attributions.values() for name in by_input}
    return logged + sorted(attributed - set(logged))


def pick_input(input_name: Optional[str], known, where: str) -> str:
    """`input_name`, checked against `known`; when it is None or "", the only one there is."""
    if not known:
        raise NotFound(f"{where} holds no attributions")
    if input_name is None or input_name == "":
        if len(known) != 1:
            raise BadQuery(f"{where} has several inputs {sorted(known)}; choose one with input=...")
        return next(iter(known))
    if input_name not in known:
        raise NotFound(f"input {input_name!r} not found in {where}; known inputs: {sorted(known)}")
    return input_name


def attribution_ref(run: Run, method: str, input_name: Optional[str] = None) -> TagRef:
    """The attribution tag of `method` on `input_name` (None: the method's only input)."""
    by_input = run.index.attributions.get(method)
    if by_input is None:
        attributed = sorted(run.index.attributions)
        failed = "" if method not in run.index.failures else " (it failed at every logged step: see failures)"
        raise NotFound(
            f"no attributions for method {method!r} in run {run.name!r}{failed}; methods with attributions: "
            f"{attributed}"
        )
    return by_input[pick_input(input_name, by_input, f"method {method!r} of run {run.name!r}")]


def attribution(run: Run, method: str, input_name: Optional[str] = None) -> tuple:
    """``(ref, series)`` of the attribution tag; NotFound naming why if its tensors cannot be used."""
    ref = attribution_ref(run, method, input_name)
    return ref, run.usable(ref)


def map_layout(ref: TagRef, attribution_shape) -> layouts.MapLayout:
    """The layout of the maps of an attribution tag (`tb_xai.layout`)."""
    return layouts.map_layout(attribution_shape, ref.info.modality, ref.info.feature_names)


def layout_of(run: Run, method: str, input_name: Optional[str] = None) -> layouts.MapLayout:
    """The layout and element names of `method`'s maps on `input_name`."""
    ref = attribution_ref(run, method, input_name)
    description = run.describe(ref)
    if description.problem is not None:
        run.usable(ref)  # raises with the reason
    return map_layout(ref, description.shape[2:])


def config(run: Run, method: str, input_name: Optional[str] = None) -> dict:
    """The parameters the method logged with its attributions (the first input's, when it has several)."""
    by_input = run.index.attributions.get(method)
    if by_input and input_name is None:
        input_name = sorted(by_input)[0]
    return dict(attribution_ref(run, method, input_name).info.config)


# ---- targets, importance, ranking ---------------------------------------------------------------------


def aligned_targets(run: Run, series: TagSeries) -> np.ndarray:
    """``[steps, probes]`` targets at the steps of `series`; -1 (no class) where none fits."""
    probes = series.values.shape[1] if series.values.ndim >= 2 else 0
    targets = run.optional(run.index.targets)
    if targets is None:
        return aggregate.align_targets(series.steps, [], [], probes)
    return aggregate.align_targets(series.steps, targets.steps, list(targets.values), probes)


@dataclasses.dataclass(frozen=True)
class Importance:
    """Per-step importance of one method on one input: ``values [n, *map_shape]`` at ``steps [n]``, and the
    number of probes averaged per step (``counts``)."""

    ref: TagRef
    steps: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    layout: layouts.MapLayout

    @property
    def flat(self) -> np.ndarray:
        """``[n, prod(map_shape)]``."""
        return self.values.reshape(self.values.shape[0], self.layout.size)

    def order(self) -> np.ndarray:
        """Flat map element indices by ``|importance|`` at the last step holding a finite value, largest first."""
        if not self.steps.size:
            return np.zeros(0, dtype=np.int64)
        return aggregate.importance_order(self.flat)


def importance(
    run: Run,
    method: str,
    input_name: Optional[str] = None,
    *,
    signed: bool = False,
    target: Optional[int] = None,
    steps: tuple = ALL_STEPS,
) -> Importance:
    """The mean map over the counted probes, per step (`aggregate.feature_importance`).

    Args:
        run: the run.
        method: a method with attributions.
        input_name: the input (None: the method's only input).
        signed: average signed attributions instead of magnitudes.
        target: count only the probes explained for this class at each step.
        steps: ``(start, stop)`` step range, ``start <= step < stop``, either may be None.
    """
    ref, full = attribution(run, method, input_name)
    key = ("importance", signed, target, tuple(steps),
           run.index.targets.version if target is not None and run.index.targets else None)
    known = full.derived.get(key)
    if known is not None and known.ref == ref:
        return known
    series = full.select(*steps)
    targets = aligned_targets(run, series) if target is not None else None
    values, counts = aggregate.feature_importance(
        series.values, modality=ref.info.modality, signed=signed, targets=targets, target=target
    )
    result = Importance(ref, series.steps, values, counts, map_layout(ref, full.values.shape[2:]))
    if len(full.derived) < 64:  # a few views per tag; the bound keeps odd step ranges from piling up
        full.derived[key] = result
    return result


def ranking(run: Run, method: str, input_name: Optional[str] = None, *, position: int = -1) -> list:
    """Map element names by ``|importance|`` at one step (a position in the method's steps), largest first."""
    result = importance(run, method, input_name)
    count = len(result.steps)
    if not -count <= position < count:
        raise IndexError(f"step position {position} is out of range for {count} logged steps of {method!r}")
    order = aggregate.importance_order(result.flat[[position]])
    return [result.layout.name(int(i)) for i in order]


def stability(
    run: Run, method: str, input_name: Optional[str] = None, *, k: int = aggregate.DEFAULT_K,
    target: Optional[int] = None,
) -> dict:
    """`aggregate.rank_stability` of the importance (magnitudes), with the ``steps`` and the effective ``k``."""
    result = importance(run, method, input_name, target=target)
    if result.steps.size:
        answer = aggregate.rank_stability(result.flat, k)
    else:
        answer = {name: np.zeros(0) for name in ("spearman_previous", "topk_previous", "spearman_last", "topk_last")}
        answer["k"] = min(k, result.layout.size)
    answer["steps"] = result.steps
    answer["input"] = result.ref.info.input_name
    return answer


def agreement(
    run: Run, input_name: Optional[str] = None, *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
) -> dict:
    """Rank agreement of every pair of methods whose maps on one input have one shape.

    Returns:
        ``input`` (the input compared), ``methods`` (sorted, those with usable attributions on it), ``pairs``
        (`aggregate.agreement_by_shape`) and ``k`` (the requested k clipped to the smallest map).
    """
    known = {name for by_input in run.index.attributions.values() for name in by_input}
    input_name = pick_input(input_name, known, f"run {run.name!r}")
    importances = {}
    for method, by_input in run.index.attributions.items():
        ref = by_input.get(input_name)
        if ref is None or run.optional(ref) is None:
            continue
        result = importance(run, method, input_name, target=target)
        if result.steps.size:
            importances[method] = (result.steps, result.values)
    sizes = [int(np.prod(values.shape[1:])) for _, values in importances.values()]
    return {
        "input": input_name,
        "methods": sorted(importances),
        "pairs": aggregate.agreement_by_shape(importances, k),
        "k": min([k] + sizes),
    }


# ---- figures and findings (tb_xai.findings, tb_xai.quality) -------------------------------------------


def logged_figures(run: Run) -> dict:
    """method -> figure -> ``(steps, values)`` of the quality figures the callback logged as scalars."""
    out: dict = {}
    for tag, series in run.scalars().items():
        parsed = quality_lib.parse_scalar_tag(tag)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = series
    return out


def method_history(run: Run, method: str, logged: Optional[dict] = None) -> findings_lib.MethodHistory:
    """The |maps| of every input `method` explains, flattened and concatenated, at the steps all of them hold.

    An input the method does not explain (no tag) or whose tag is left out (see `Run.skipped`) is not part of
    it. Element names are the layout's (`tb_xai.layout`), prefixed with ``"<input>: "`` when the probe has
    several inputs.

    Args:
        run: the run.
        method: a method with attributions.
        logged: the method's logged quality figures (`logged_figures`); read from the run when None.
    """
    by_input = run.index.attributions.get(method)
    if not by_input:
        attribution_ref(run, method)  # raises, naming the methods there are
    names_of_inputs = inputs(run)
    parts = []
    for name in [n for n in names_of_inputs if n in by_input]:
        series = run.optional(by_input[name])
        if series is not None and series.steps.size:
            parts.append((by_input[name], series))
    if not parts:
        left_out = {ref.tag: run.describe(ref).problem for ref in by_input.values()}
        raise NotFound(f"method {method!r} of run {run.name!r} has no usable attributions (left out: {left_out})")
    steps = parts[0][1].steps
    for _, series in parts[1:]:  # the inputs' steps differ only where a tag lost steps of another shape
        steps = np.intersect1d(steps, series.steps)
    maps, names = [], []
    for ref, series in parts:
        values = series.values[np.isin(series.steps, steps)]
        maps.append(findings_lib.as_maps(values, ref.info.modality))
        prefix = f"{ref.info.input_name}: " if len(names_of_inputs) > 1 else ""
        names += [prefix + n for n in map_layout(ref, series.values.shape[2:]).names()]
    if logged is None:
        logged = logged_figures(run).get(method, {})
    return findings_lib.MethodHistory(steps.astype(np.int64), np.concatenate(maps, axis=2), names, logged)


def metrics(run: Run, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None) -> dict:
    """The per-step figures of `method`: drift, noise floor and concentration computed from its maps
    (`findings_lib.figures`, every input concatenated), and the faithfulness, seed and sanity figures the
    callback logged (NaN at steps it did not log them).

    Returns:
        ``steps`` (int64) and one float64 array over those steps per figure.
    """
    history = method_history(run, method)
    out = findings_lib.figures(history.steps, history.maps, k, reference_step)
    for group in ("faithfulness", "seeds", "sanity"):
        for figure in quality_lib.FIGURES[group]:
            out[figure] = history.logged_at(figure)
    return out


def findings(
    run: Run, *, thresholds: Optional[findings_lib.Thresholds] = None, reference_step: Optional[int] = None
) -> list:
    """Every finding of the run (`findings_lib.findings`; default `findings_lib.Thresholds`), ordered by step:
    JSON-ready dicts.

    Methods without usable attributions (those that only failed) are left out; prediction flips need the
    predictions tag.
    """
    logged = logged_figures(run)
    histories = {}
    for method in methods(run):
        try:
            histories[method] = method_history(run, method, logged.get(method, {}))
        except NotFound:  # a method that only ever failed, or whose tags are left out
            continue
    series = predictions(run)
    pred_steps = values = None
    if series is not None and series.steps.size:
        pred_steps, values = series.steps, series.values
    return findings_lib.findings(
        histories, pred_steps, values, labels(run), (class_names(run) or None) if values is not None else None,
        thresholds=thresholds or findings_lib.Thresholds(), reference_step=reference_step,
    )


# ---- the rest of a run --------------------------------------------------------------------------------


def failures(run: Run, method: Optional[str] = None) -> list:
    """``(step, method, message)`` for every step a method failed at, sorted; unusable failure tags left out."""
    out = []
    for name, ref in run.index.failures.items():
        if method is not None and name != method:
            continue
        series = run.optional(ref)
        if series is None:
            continue
        for step, value in zip(series.steps, series.values):
            out.append((int(step), name, text(np.asarray(value).reshape(-1)[0])))
    return sorted(out)


def predictions(run: Run) -> Optional[TagSeries]:
    """The predictions tag's series, None if it is absent or unusable."""
    return run.optional(run.index.predictions)


def probe_count(run: Run) -> Optional[int]:
    """The number of probes: the predictions' first axis, else an attribution's; None before any tensor."""
    series = predictions(run)
    if series is not None and series.steps.size:
        return int(series.values.shape[1])
    for by_input in run.index.attributions.values():
        for ref in by_input.values():
            description = run.describe(ref)
            if description.problem is None and description.steps.size:
                return int(description.shape[1])
    return None


def class_names(run: Run) -> list:
    return list(run.index.predictions.info.class_names) if run.index.predictions else []


def class_count(run: Run) -> int:
    """The explained head's outputs (the predictions' last axis, 1 for one per probe), else the class names."""
    series = predictions(run)
    if series is not None and series.steps.size:
        return int(series.values.shape[2]) if series.values.ndim >= 3 else 1
    return len(class_names(run))


def probe_values(run: Run, input_name: str) -> Optional[np.ndarray]:
    """The probe inputs of `input_name` as logged last, ``[probes, ...]``; None if absent or unusable."""
    series = run.optional(run.index.probes.get(input_name))
    return None if series is None or not series.steps.size else series.values[-1]


def labels(run: Run) -> Optional[np.ndarray]:
    """The labels as logged last, ``[probes, ...]``; None if absent or unusable."""
    series = run.optional(run.index.labels)
    return None if series is None or not series.steps.size else series.values[-1]


def text(value) -> str:
    """A logged string (bytes are UTF-8, undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
