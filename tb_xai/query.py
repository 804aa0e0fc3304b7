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
from tb_xai.modalities import TEXT
from tb_xai.runmodel import BadQuery, NotFound, Run, TagRef, TagSeries

ALL_STEPS = (None, None)
#: How a text input's importance is laid out (``by=``): one value per token position, or one per word.
POSITION, WORD = "position", "word"
BY = (POSITION, WORD)


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


def layout_of(run: Run, method: str, input_name: Optional[str] = None, *, by: str = POSITION) -> layouts.MapLayout:
    """The layout and element names of `method`'s maps on `input_name` (``by="word"``: a text input's words)."""
    if check_by(by) == WORD:
        return importance(run, method, input_name, by=WORD).layout
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


# ---- text inputs (tokens and padding) -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TextProbe:
    """A text input's probes: ``tokens [probes, positions]`` (str), ``padding [probes, positions]`` (bool), the
    token ``ids`` as logged (None when the probe tag was not logged), and the TOKENS tag's config."""

    input: str
    tokens: np.ndarray
    padding: np.ndarray
    ids: Optional[np.ndarray]
    padding_id: Optional[int]
    mask_id: Optional[int]
    padding_input: Optional[str]

    def to_json(self) -> dict:
        """The ``text`` object of the HTTP API (docs/http_api.md): how the input's padding is read."""
        return {"positions": int(self.tokens.shape[1]), "padding_id": self.padding_id, "mask_id": self.mask_id,
                "padding_input": self.padding_input}


def text_inputs(run: Run) -> list:
    """The text inputs (modality ``text``): those with a TOKENS tag or a probe or attribution tag of that
    modality, in the order of :func:`inputs`."""
    text = set(run.index.tokens)
    text |= {name for name, ref in run.index.probes.items() if ref.info.modality == TEXT}
    text |= {name for by_input in run.index.attributions.values() for name, ref in by_input.items()
             if ref.info.modality == TEXT}
    return [name for name in inputs(run) + sorted(text - set(inputs(run))) if name in text]


def text_probe(run: Run, input_name: Optional[str] = None) -> TextProbe:
    """The tokens and padding of a text input (None: the run's only text input).

    The padding rule (the one place the read side applies it): a position is padding when its id is the
    TOKENS tag's ``padding_id``, or when the ``padding_input``'s probe value is 0 there. Without a TOKENS tag
    the tokens are the ids written as numbers and no position is padding.

    Raises:
        NotFound: the input is not a text input, or a tag its tokens or padding need is absent, left out, or
            of another shape than the tokens.
    """
    known = text_inputs(run)
    if not known:
        raise NotFound(f"run {run.name!r} has no text input; its inputs: {inputs(run)}")
    name = pick_input(input_name, known, f"the text inputs of run {run.name!r}")
    where = f"text input {name!r} of run {run.name!r}"
    ref = run.index.tokens.get(name)
    config = dict(ref.info.config) if ref is not None else {}
    ids = _probe_tag_values(run, name, f"the token ids of {where}", required=False)
    if ref is not None:
        series = run.usable(ref)
        if not series.steps.size:
            raise NotFound(f"the tokens tag {ref.tag!r} of {where} holds no step")
        tokens = np.vectorize(text, otypes=[object])(series.values[-1])
    elif ids is not None:
        tokens = np.vectorize(lambda i: str(int(i)), otypes=[object])(ids)
    else:  # raises, saying why the ids are not there
        _probe_tag_values(run, name, f"the token ids of {where}, which has no tokens tag,")
    if ids is not None and ids.shape != tokens.shape:
        raise NotFound(f"{where}: its tokens are {list(tokens.shape)} [probes, positions] but its token ids "
                       f"{list(ids.shape)}; the two tags disagree")
    padding = np.zeros(tokens.shape, dtype=bool)
    padding_id, padding_input = config.get("padding_id"), config.get("padding_input")
    if padding_id is not None:
        if ids is None:  # raises, saying why the ids are not there
            _probe_tag_values(run, name, f"the token ids of {where}, which its padding (padding_id={padding_id}) "
                              "is read from,")
        padding |= ids == padding_id
    if padding_input is not None:
        mask = _probe_tag_values(run, padding_input, f"the padding input {padding_input!r} of {where}")
        if mask.shape != tokens.shape:
            raise NotFound(f"the padding input {padding_input!r} of {where} is {list(mask.shape)} but its tokens "
                           f"are {list(tokens.shape)} [probes, positions]")
        padding |= mask == 0
    return TextProbe(name, tokens, padding, None if ids is None else ids.astype(np.int64), padding_id,
                     config.get("mask_id"), padding_input)


def text_probe_of(run: Run, ref: TagRef, series: TagSeries) -> TextProbe:
    """The :func:`text_probe` of a text attribution tag's input, checked against the tag's ``[probes,
    positions]``; NotFound naming both shapes when they differ."""
    probe = text_probe(run, ref.info.input_name)
    if series.steps.size and series.values.shape[1:] != probe.tokens.shape:
        raise NotFound(
            f"the attributions {ref.tag!r} of run {run.name!r} are {list(series.values.shape[1:])} [probes, "
            f"positions] per step but the input's tokens are {list(probe.tokens.shape)}"
        )
    return probe


def _probe_tag_values(run: Run, name: str, what: str, required: bool = True) -> Optional[np.ndarray]:
    ref = run.index.probes.get(name)
    values = probe_values(run, name)
    if values is None and required:
        reason = "it was not logged" if ref is None else f"left out: {run.skipped().get(ref.tag, 'no step')}"
        raise NotFound(f"{what} is not there ({reason})")
    return values


def _text_versions(run: Run, name: str) -> tuple:
    """The versions of the tags a text input's tokens and padding are read from (a cache key part)."""
    token_ref = run.index.tokens.get(name)
    refs = [token_ref, run.index.probes.get(name)]
    padding_input = token_ref.info.config.get("padding_input") if token_ref is not None else None
    if padding_input:
        refs.append(run.index.probes.get(padding_input))
    return tuple(None if r is None else (r.tag, r.version) for r in refs)


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
    number of probes averaged per step (``counts``). By word (a text input), the map is one value per word
    (``layout.names()``) and ``occurrences`` counts each word's non-padding positions over every probe."""

    ref: TagRef
    steps: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    layout: layouts.MapLayout
    by: str = POSITION
    occurrences: Optional[np.ndarray] = None

    @property
    def flat(self) -> np.ndarray:
        """``[n, prod(map_shape)]``."""
        return self.values.reshape(self.values.shape[0], self.layout.size)

    def order(self) -> np.ndarray:
        """Flat map element indices by ``|importance|`` at the last step holding a finite value, largest first."""
        if not self.steps.size:
            return np.zeros(0, dtype=np.int64)
        return aggregate.importance_order(self.flat)


def check_by(by: str) -> str:
    """`by` if it is one of :data:`BY`, else BadQuery naming it."""
    if by not in BY:
        raise BadQuery(f"by must be one of {list(BY)}; received by={by!r}")
    return by


def importance(
    run: Run,
    method: str,
    input_name: Optional[str] = None,
    *,
    signed: bool = False,
    target: Optional[int] = None,
    steps: tuple = ALL_STEPS,
    by: str = POSITION,
) -> Importance:
    """The mean map over the counted probes, per step (`aggregate.feature_importance`).

    On a text input, padding positions are left out of every mean (a position's mean is over the probes where
    it is not padding: NaN where it is padding in every counted probe), and ``by="word"`` gives one value per
    word: its mean over its non-padding occurrences in the counted probes (`aggregate.word_importance`).

    Args:
        run: the run.
        method: a method with attributions.
        input_name: the input (None: the method's only input).
        signed: average signed attributions instead of magnitudes.
        target: count only the probes explained for this class at each step.
        steps: ``(start, stop)`` step range, ``start <= step < stop``, either may be None.
        by: ``"position"`` (every input) or ``"word"`` (text inputs).
    """
    check_by(by)
    ref, full = attribution(run, method, input_name)
    text_input = ref.info.modality == TEXT
    if by == WORD and not text_input:
        raise BadQuery(
            f"by='word' needs a text input; input {ref.info.input_name!r} of method {method!r} is "
            f"{ref.info.modality or 'of no modality'} (by='position' works for every input)"
        )
    key = ("importance", signed, target, tuple(steps),
           run.index.targets.version if target is not None and run.index.targets else None, by,
           _text_versions(run, ref.info.input_name) if text_input else None)
    known = full.derived.get(key)
    if known is not None and known.ref == ref:
        return known
    series = full.select(*steps)
    targets = aligned_targets(run, series) if target is not None else None
    if not text_input:
        values, counts = aggregate.feature_importance(
            series.values, modality=ref.info.modality, signed=signed, targets=targets, target=target
        )
        result = Importance(ref, series.steps, values, counts, map_layout(ref, full.values.shape[2:]))
    else:
        probe = text_probe_of(run, ref, full)
        if by == POSITION:
            values, counts = aggregate.feature_importance(
                series.values, modality=TEXT, signed=signed, targets=targets, target=target, valid=~probe.padding
            )
            result = Importance(ref, series.steps, values, counts, map_layout(ref, full.values.shape[2:]))
        else:
            words, values, occurrences, counts = aggregate.word_importance(
                series.values, probe.tokens, ~probe.padding, signed=signed, targets=targets, target=target
            )
            layout = layouts.MapLayout(layouts.VECTOR, (len(words),), vector_names=tuple(words))
            result = Importance(ref, series.steps, values, counts, layout, WORD, occurrences)
    if len(full.derived) < 64:  # a few views per tag; the bound keeps odd step ranges from piling up
        full.derived[key] = result
    return result


def ranking(
    run: Run, method: str, input_name: Optional[str] = None, *, position: int = -1, by: str = POSITION
) -> list:
    """Map element names by ``|importance|`` at one step (a position in the method's steps), largest first.

    On a text input, positions that are padding in every probe (no value) are left out; ``by="word"`` ranks
    the words (see :func:`importance`).
    """
    result = importance(run, method, input_name, by=by)
    count = len(result.steps)
    if not -count <= position < count:
        raise IndexError(f"step position {position} is out of range for {count} logged steps of {method!r}")
    row = result.flat[[position]]
    order = aggregate.importance_order(row)
    if result.ref.info.modality == TEXT:
        order = order[np.isfinite(row[0, order])]
    return [result.layout.name(int(i)) for i in order]


def _ranked_elements(result: Importance) -> np.ndarray:
    """The flat map elements that hold a value wherever their step holds one: a text input's positions that are
    padding in every counted probe are left out of rank comparisons (their NaN would void every correlation)."""
    flat = result.flat
    if result.ref.info.modality != TEXT or not flat.size:
        return np.arange(flat.shape[1])
    rows = np.isfinite(flat).any(axis=1)
    return np.flatnonzero(np.isfinite(flat[rows]).all(axis=0)) if rows.any() else np.arange(flat.shape[1])


def stability(
    run: Run, method: str, input_name: Optional[str] = None, *, k: int = aggregate.DEFAULT_K,
    target: Optional[int] = None,
) -> dict:
    """`aggregate.rank_stability` of the importance (magnitudes), with the ``steps`` and the effective ``k``."""
    result = importance(run, method, input_name, target=target)
    if result.steps.size:
        answer = aggregate.rank_stability(result.flat[:, _ranked_elements(result)], k)
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
    importances, common = {}, None
    for method, by_input in run.index.attributions.items():
        ref = by_input.get(input_name)
        if ref is None or run.optional(ref) is None:
            continue
        result = importance(run, method, input_name, target=target)
        if result.steps.size:
            importances[method] = (result.steps, result.values)
            if result.ref.info.modality == TEXT:  # compare the positions every method holds a value at
                kept = _ranked_elements(result)
                common = kept if common is None else np.intersect1d(common, kept)
    if common is not None:
        # text attributions on one input are [positions] maps of one length (runmodel.check_series)
        importances = {m: (at, values[:, common]) for m, (at, values) in importances.items()}
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
