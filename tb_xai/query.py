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
import threading
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

    @property
    def layout(self) -> layouts.MapLayout:
        """The layout of the input's maps: one value per token position."""
        return layouts.layout_of_map(self.tokens.shape[1:], TEXT)

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


def overhead(run: Run) -> dict:
    """What the callback cost the training: ``steps`` (the logged steps, int64), ``overhead`` (its CPU time in the
    fit so far over the training epochs', at each) and ``skipped_epochs`` (with a `max_overhead` budget, the
    scheduled epochs skipped before each; NaN where not logged). Empty arrays for a run that logged neither."""
    scalars = run.scalars()
    series = {name: scalars.get(tag) for name, tag in (("overhead", quality_lib.OVERHEAD_TAG),
                                                       ("skipped_epochs", quality_lib.SKIPPED_EPOCHS_TAG))}
    steps = np.unique(np.concatenate([np.zeros(0, np.int64)] + [s[0] for s in series.values() if s is not None]))
    out = {"steps": steps.astype(np.int64)}
    for name, s in series.items():
        values = np.full(len(steps), np.nan)
        if s is not None:
            values[np.searchsorted(steps, s[0])] = s[1]
        out[name] = values
    return out


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
    maps, names, sizes = [], [], []
    for ref, series in parts:
        values = series.values[np.isin(series.steps, steps)]
        maps.append(findings_lib.as_maps(values, ref.info.modality))
        prefix = f"{ref.info.input_name}: " if len(names_of_inputs) > 1 else ""
        names += [prefix + n for n in map_layout(ref, series.values.shape[2:]).names()]
        sizes.append((ref.info.input_name, maps[-1].shape[2]))
    if logged is None:
        logged = logged_figures(run).get(method, {})
    shared = {"floor_cache": floors_cache(parts[0][1])} if len(parts) == 1 else {}
    return findings_lib.MethodHistory(steps.astype(np.int64), np.concatenate(maps, axis=2), names, logged, sizes,
                                      **shared)


def floors_cache(series: TagSeries) -> dict:
    """The noise floors (`findings_lib.bootstrap_floors`) of the maps of every step of `series`, by ``("floors",
    k)``: kept with the series, so they live as long as this version of the tag; shared by the stability view's
    noise band and the findings and quality figures of a method with one input (and, under ``"computing"``, the
    lock the noise band holds while it computes them)."""
    return series.derived.setdefault(("floors",), {})


def metrics(run: Run, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None) -> dict:
    """The per-step figures of `method`: drift, noise floor and concentration computed from its maps
    (`findings_lib.figures`, every input concatenated), and the faithfulness, seed and sanity figures the
    callback logged (NaN at steps it did not log them).

    Returns:
        ``steps`` (int64) and one float64 array over those steps per figure.
    """
    return _metrics_of(method_history(run, method), k, reference_step)


def _metrics_of(history: findings_lib.MethodHistory, k: int, reference_step: Optional[int]) -> dict:
    out = findings_lib.figures(history.steps, history.maps, k, reference_step, floors=history.floors(k))
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


def quality(run: Run, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None) -> dict:
    """`metrics` as the Quality card draws them: the figures holding a value at some step, their labels, and
    the thresholds findings compare them with.

    Returns:
        ``steps`` (list), ``figures`` (figure -> list of float or None per step, in `quality_lib.FIGURES`
        order, figures never logged left out), ``labels`` (figure -> label), ``groups`` (group -> its figures
        present), ``thresholds`` (figure -> the level findings compare it with: drift on ``ndcg_reference``,
        the sanity check on ``sanity_spearman``), ``k`` and ``reference_step`` (the step used).
    """
    history = method_history(run, method)
    values = _metrics_of(history, k, reference_step)
    steps = values.pop("steps")
    present = {name: v for name, v in findings_lib.as_json(values).items() if any(x is not None for x in v)}
    groups = {group: [f for f in names if f in present] for group, names in quality_lib.FIGURES.items()}
    labels = quality_lib.figure_labels(min(k, max(1, history.maps.shape[2])))
    defaults = findings_lib.Thresholds()
    return {
        "steps": [int(s) for s in steps],
        "figures": {f: present[f] for group in groups.values() for f in group},
        "labels": {f: labels[f] for group in groups.values() for f in group},
        "groups": {group: names for group, names in groups.items() if names},
        "thresholds": {"ndcg_reference": defaults.drift, "sanity_spearman": defaults.sanity},
        "k": k,
        "reference_step": int(steps[findings_lib.reference_index(steps, reference_step)]) if len(steps) else None,
    }


def noise_floor(
    run: Run, method: str, input_name: Optional[str] = None, *, k: int = aggregate.DEFAULT_K,
    target: Optional[int] = None,
) -> dict:
    """The noise band of `stability`: at each of its steps, how far the importance ranking of `input_name`
    moves when the probe set is resampled (`findings_lib.bootstrap_floors` over the probes `importance` counts),
    and, for sampling methods, the between-seed agreement the callback logged (held from the step it was last
    logged, its first value before that, as findings use it; NaN for a method without seed figures).

    Returns:
        ``steps`` and float64 ``spearman_floor``, ``ndcg_floor``, ``seed_spearman``, ``seed_ndcg`` over them.
    """
    ref, full = attribution(run, method, input_name)
    key = ("noise_floor", k, target, run.index.targets.version if target is not None and run.index.targets else None)
    known = full.derived.get(key)
    if known is None and target is None:  # shared with the findings and quality figures (`floors_cache`)
        cache = floors_cache(full)
        with cache.setdefault("computing", threading.Lock()):  # a second request waits for the first's floors
            known = cache.get(("floors", k))
            if known is None:
                known = cache[("floors", k)] = findings_lib.bootstrap_floors(_maps_of(ref, full), k)
    if known is None:
        counted = aligned_targets(run, full) == target
        known = findings_lib.bootstrap_floors([m[counted[i]] for i, m in enumerate(_maps_of(ref, full))], k)
        if len(full.derived) < 64:  # as `importance`: a few views per tag
            full.derived[key] = known
    logged = logged_figures(run).get(method, {})
    seeds = {name: findings_lib.logged_at(logged.get(name), full.steps, fill=True)
             for name in ("seed_spearman", "seed_ndcg")}
    return {"steps": full.steps, **known, **seeds}


def _maps_of(ref: TagRef, full: TagSeries) -> np.ndarray:
    """The |maps| `bootstrap_floors` reads, in the logged float type (it converts them to float64 itself)."""
    return findings_lib.as_maps(full.values, ref.info.modality, dtype=None) if full.steps.size else np.zeros((0, 0, 0))


def open_view(run: Run, finding: dict) -> dict:
    """Where the dashboard shows `finding`: ``{"view", "method", "input", "step", "probe"}``.

    A feature entering or leaving the top-k opens the evolution view; drift the stability view; a probe's
    change or flip the probe view of that probe (a flip, which has no method, with the run's first method);
    disagreeing methods the agreement view; a failed sanity check the quality view. ``input`` is the
    finding's, else the method's first input.
    """
    kind = finding["kind"]
    view = {"topk_enter": "evolution", "topk_leave": "evolution", "drift": "stability",
            "sanity_failed": "quality", "methods_disagree": "agreement", "prediction_flip": "probe",
            "explanation_changed": "probe", "prediction_flipped_explanation_stable": "probe"}[kind]
    method = (finding.get("methods") or [finding["method"]])[0]
    if method is None:
        with_maps = [m for m in methods(run) if run.index.attributions.get(m)]
        method = with_maps[0] if with_maps else None
    input_name = finding.get("input")
    if input_name is None and method is not None and run.index.attributions.get(method):
        input_name = [name for name in inputs(run) if name in run.index.attributions[method]][0]
    return {"view": view, "method": method, "input": input_name, "step": finding["step"], "probe": finding["probe"]}


def probe_summary(
    run: Run, method: Optional[str] = None, input_name: Optional[str] = None, *, step: Optional[int] = None
) -> dict:
    """What the probe menu says of each probe at `step`: its label, prediction, whether that prediction
    flipped, and how much its explanation changed.

    Args:
        run: the run.
        method: the method whose explanation change is measured (None: no ``change``).
        input_name: that method's input; None: every input it explains, maps concatenated (as findings do).
        step: a logged step of `method` (of the predictions without a method); None: the last one.

    Returns:
        ``step`` (the step answered, None when nothing is logged) and ``probes``: per probe a dict with
        ``probe``, ``label`` (class index, or the label as logged when it is no class), ``label_name``,
        ``prediction`` (the predicted class at the latest prediction step at or before `step`: argmax, or
        above 0.5 for one unit; None for a regression), ``prediction_name``, ``correct`` (None without class
        labels), ``flipped`` (the prediction differs from the one at the first logged step), ``flip_steps``
        (every step whose prediction differs from the step before, over the whole run) and ``change``
        (``1 - Spearman`` of the probe's |map| at `step` with its map at the method's first logged step; None
        without a method or where the Spearman is undefined, a constant map).
    """
    count = probe_count(run) or 0
    series = predictions(run)
    pred_steps = series.steps if series is not None else np.zeros(0, dtype=np.int64)
    change = None
    if method is not None:
        if input_name is None:
            history = method_history(run, method)
            steps, maps = history.steps, history.maps
        else:
            ref, full = attribution(run, method, input_name)
            steps, maps = full.steps, findings_lib.as_maps(full.values, ref.info.modality)
        step = _logged_step(steps, step, f"method {method!r}")
        if step is not None:
            rho = findings_lib.paired_spearman(maps[0], maps[int(np.flatnonzero(steps == step)[0])])
            change = 1.0 - rho
            count = count or len(rho)
    else:
        step = _logged_step(pred_steps, step, f"the predictions of run {run.name!r}")
    classes = None
    if pred_steps.size:
        values = np.asarray(series.values, dtype=np.float64)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        if not findings_lib.is_regression(values):
            classes = findings_lib.predicted_classes(values)
    row = None
    if classes is not None and step is not None and pred_steps[0] <= step:
        row = int(np.searchsorted(pred_steps, step, side="right")) - 1
    raw_labels = labels(run)
    truth = findings_lib.label_classes(raw_labels, count)
    names = class_names(run)

    def name(c):
        return names[c] if c is not None and 0 <= c < len(names) else None

    out = []
    for p in range(count):
        label = int(truth[p]) if truth is not None else (
            _plain(raw_labels[p]) if raw_labels is not None and p < len(raw_labels) else None)
        prediction = int(classes[row, p]) if row is not None and p < classes.shape[1] else None
        flips = ([int(s) for s in pred_steps[1:][classes[1:, p] != classes[:-1, p]]]
                 if classes is not None and p < classes.shape[1] else [])
        value = None if change is None or p >= len(change) else change[p]
        out.append({
            "probe": p,
            "label": label,
            "label_name": name(label) if truth is not None else None,
            "prediction": prediction,
            "prediction_name": name(prediction),
            "correct": None if truth is None or prediction is None else bool(prediction == truth[p]),
            "flipped": bool(prediction is not None and prediction != classes[0, p]),
            "flip_steps": flips,
            "change": None if value is None or not np.isfinite(value) else float(value),
        })
    return {"step": step, "probes": out}


def _logged_step(steps: np.ndarray, step: Optional[int], what: str) -> Optional[int]:
    """`step` checked against the logged `steps` (None: the last one; None when nothing is logged)."""
    if step is None:
        return int(steps[-1]) if len(steps) else None
    if int(step) not in set(np.asarray(steps).tolist()):
        raise BadQuery(f"step={step} is not a logged step of {what}; logged steps: {np.asarray(steps).tolist()}")
    return int(step)


def _plain(value):
    value = np.asarray(value)
    if value.dtype.kind in "SUO":
        return text(value.reshape(-1)[0]) if value.size == 1 else [text(v) for v in value.reshape(-1)]
    return value.item() if value.size == 1 else value.tolist()


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
