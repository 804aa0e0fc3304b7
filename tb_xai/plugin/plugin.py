"""The tb_xai TensorBoard plugin: routes parse the request, pure ``*_impl`` functions compute the answer.

Route reference with every field: ``docs/http_api.md``. The numbers come from :mod:`tb_xai.aggregate`.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from tensorboard.plugins.scalar import metadata as scalar_metadata
from werkzeug import wrappers

from tb_xai import aggregate, metadata
from tb_xai.plugin import loader, run_data

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".txt": "text/plain",
}
SIGNIFICANT_DIGITS = 6
# The `scalars` answer keeps at most this many points per tag (evenly spread, the first and last kept).
MAX_SCALAR_POINTS = 1000


class XaiPlugin(base_plugin.TBPlugin):
    """Serves the attribution history of tb_xai runs to the frontend."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        cache_mb = getattr(context.flags, "xai_cache_mb", loader.DEFAULT_CACHE_MB)
        self._data_provider = context.data_provider
        self._reader = run_data.ProviderReader(context.data_provider, cache_bytes=cache_mb * 2**20)

    def get_plugin_apps(self):
        return {
            "/runs": self._runs_route,
            "/evolution": self._evolution_route,
            "/probe": self._probe_route,
            "/stability": self._stability_route,
            "/agreement": self._agreement_route,
            "/scalars": self._scalars_route,
            "/index.js": self._index_js_route,
            "/static/*": self._static_route,
        }

    def is_active(self) -> bool:
        return False  # The data provider's plugin listing says when a run holds our tags.

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Attributions")

    def _run(self, request) -> run_data.Run:
        runs = self._reader.runs(plugin_util.context(request.environ), plugin_util.experiment_id(request.environ))
        return find_run(runs, _required(request, "run"))

    @wrappers.Request.application
    def _runs_route(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        listing = self._data_provider.list_scalars(
            ctx, experiment_id=eid, plugin_name=scalar_metadata.PLUGIN_NAME
        )
        versions = scalar_versions(listing)
        body = runs_impl(self._reader.runs(ctx, eid), sorted(versions), versions)
        return _json_response(request, body)

    @wrappers.Request.application
    def _evolution_route(self, request):
        body = evolution_impl(
            self._run(request),
            _required(request, "method"),
            request.args.get("input"),
            signed=parse_bool(request.args.get("signed"), "signed"),
            target=parse_target(request.args.get("target")),
            steps=parse_step_range(request.args.get("steps")),
        )
        return _json_response(request, body)

    @wrappers.Request.application
    def _probe_route(self, request):
        body = probe_impl(
            self._run(request),
            _required(request, "method"),
            request.args.get("input"),
            parse_int(_required(request, "probe"), "probe", minimum=0),
            signed=parse_bool(request.args.get("signed"), "signed"),
            steps=parse_step_range(request.args.get("steps")),
        )
        return _json_response(request, body)

    @wrappers.Request.application
    def _stability_route(self, request):
        body = stability_impl(
            self._run(request),
            _required(request, "method"),
            request.args.get("input"),
            k=parse_int(request.args.get("k", str(aggregate.DEFAULT_K)), "k", minimum=1),
            target=parse_target(request.args.get("target")),
        )
        return _json_response(request, body)

    @wrappers.Request.application
    def _agreement_route(self, request):
        body = agreement_impl(
            self._run(request),
            request.args.get("input"),
            k=parse_int(request.args.get("k", str(aggregate.DEFAULT_K)), "k", minimum=1),
            target=parse_target(request.args.get("target")),
        )
        return _json_response(request, body)

    @wrappers.Request.application
    def _scalars_route(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        run = find_run(self._reader.runs(ctx, eid), _required(request, "run"))
        siblings = sibling_runs(run.name, self._reader.scalar_runs(ctx, eid))
        body = scalars_impl(run.name, self._reader.scalar_series(ctx, eid, siblings))
        return _json_response(request, body)

    @wrappers.Request.application
    def _index_js_route(self, request):
        return _static_response(request, "index.js")

    @wrappers.Request.application
    def _static_route(self, request):
        marker = f"/{metadata.PLUGIN_NAME}/static/"
        path = request.path
        return _static_response(request, path[path.index(marker) + len(marker):])


# ---- request parsing ----------------------------------------------------------------------------------


def _required(request, name: str) -> str:
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing query parameter {name!r}")
    return value


def parse_int(value: str, name: str, *, minimum: Optional[int] = None) -> int:
    """Parses a decimal integer query parameter; 400 naming it if malformed or below `minimum`."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise errors.InvalidArgumentError(f"{name} must be an integer; received {name}={value!r}")
    if minimum is not None and number < minimum:
        raise errors.InvalidArgumentError(f"{name} must be at least {minimum}; received {name}={value!r}")
    return number


def parse_bool(value: Optional[str], name: str) -> bool:
    """Parses ``0``/``1``/``false``/``true`` (absent: False)."""
    choices = {None: False, "": False, "0": False, "false": False, "1": True, "true": True}
    key = value.lower() if isinstance(value, str) else value
    if key not in choices:
        raise errors.InvalidArgumentError(f"{name} must be 0, 1, false or true; received {name}={value!r}")
    return choices[key]


def parse_target(value: Optional[str]) -> Optional[int]:
    """Parses ``target``: absent or ``all`` -> None, else a class index >= 0."""
    if value is None or value in ("", "all"):
        return None
    try:
        return parse_int(value, "target", minimum=0)
    except errors.InvalidArgumentError:
        raise errors.InvalidArgumentError(
            f"target must be 'all' or a class index >= 0; received target={value!r}"
        )


def parse_step_range(value: Optional[str]) -> tuple:
    """Parses ``steps=a:b`` (``a <= step < b``, either side may be empty) into ``(start, stop)``."""
    if value is None or value == "":
        return (None, None)
    parts = value.split(":")
    if len(parts) != 2:
        raise errors.InvalidArgumentError(f"steps must look like 'a:b', ':b' or 'a:'; received steps={value!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise errors.InvalidArgumentError(
            f"steps bounds must be integers, as in '5:10'; received steps={value!r}"
        )
    if start is not None and stop is not None and stop <= start:
        raise errors.InvalidArgumentError(f"steps range is empty: {value!r} needs a < b")
    return (start, stop)


# ---- lookups ------------------------------------------------------------------------------------------


def find_run(runs: Mapping[str, run_data.Run], name: str) -> run_data.Run:
    """The run called `name`; 404 listing the known runs otherwise."""
    if name not in runs:
        raise errors.NotFoundError(f"run {name!r} holds no tb_xai data; known runs: {sorted(runs)}")
    return runs[name]


def find_attribution(run: run_data.Run, method: str, input_name: Optional[str]) -> run_data.TagRef:
    """The attribution tag of `method` on `input_name` (which may be None when the method has one input)."""
    inputs = run.index.attributions.get(method)
    if inputs is None:
        raise errors.NotFoundError(
            f"method {method!r} has no attributions in run {run.name!r}; "
            f"logged methods: {sorted(run.index.attributions)}"
        )
    return inputs[_pick_input(input_name, inputs, f"method {method!r} of run {run.name!r}")]


def _pick_input(input_name: Optional[str], known, where: str) -> str:
    if not known:
        raise errors.NotFoundError(f"{where} holds no attributions")
    if input_name is None or input_name == "":
        if len(known) != 1:
            raise errors.InvalidArgumentError(
                f"{where} has several inputs: pass input= one of {sorted(known)}"
            )
        return next(iter(known))
    if input_name not in known:
        raise errors.NotFoundError(f"input {input_name!r} not found in {where}; known inputs: {sorted(known)}")
    return input_name


def sibling_runs(run: str, candidates: Sequence[str]) -> list:
    """The runs in `candidates` next to `run` (same parent directory): ``exp1/xai`` pairs with ``exp1/train``."""
    parent = _parent(run)
    return sorted(c for c in candidates if c != run and _parent(c) == parent)


def _parent(run: str) -> str:
    cut = max(run.rfind("/"), run.rfind("\\"))
    return run[:cut] if cut >= 0 else ""


# ---- pure route logic ---------------------------------------------------------------------------------


def version_token(version: tuple) -> str:
    """A tag's listing version ``(max_step, max_wall_time)`` as a string that changes whenever the tag is written."""
    if not version:
        return ""
    step, wall_time = version
    return f"{int(step)}@{float(wall_time)!r}"


def scalar_versions(listing: Mapping[str, Mapping[str, object]]) -> dict:
    """run -> version token of its scalars, from a ``list_scalars`` answer (runs without tags left out)."""
    versions = {}
    for run, tags in listing.items():
        if tags:
            series = list(tags.values())
            versions[run] = version_token(
                (max(s.max_step for s in series), max(s.max_wall_time for s in series))
            )
    return versions


def runs_impl(
    runs: Mapping[str, run_data.Run],
    scalar_runs: Sequence[str],
    scalar_versions: Optional[Mapping[str, str]] = None,
) -> dict:
    """The ``runs`` answer: every tb_xai run and what it holds."""
    versions = scalar_versions or {}
    return {"runs": [_describe_run(runs[name], scalar_runs, versions) for name in sorted(runs)]}


def _run_version(index: run_data.RunIndex) -> str:
    """One token over every tb_xai tag of the run: it changes whenever any of them is written."""
    refs = [index.labels, index.predictions, index.targets, *index.failures.values(), *index.probes.values()]
    refs += [ref for by_input in index.attributions.values() for ref in by_input.values()]
    return ";".join(sorted(f"{ref.tag}={version_token(ref.version)}" for ref in refs if ref is not None))


def _last_written(index: run_data.RunIndex) -> Optional[float]:
    """The latest wall time any tb_xai tag of the run was written at (seconds since the epoch)."""
    refs = [index.labels, index.predictions, index.targets, *index.failures.values(), *index.probes.values()]
    refs += [ref for by_input in index.attributions.values() for ref in by_input.values()]
    times = [float(ref.version[1]) for ref in refs if ref is not None and ref.version]
    return max(times) if times else None


def _class_count(predictions: Optional[run_data.TagSeries], class_names: Sequence[str]) -> int:
    """The number of classes: the predictions' last dimension (1 for one output per probe), else the names."""
    if predictions is not None and predictions.steps.size:
        return int(predictions.values.shape[2]) if predictions.values.ndim >= 3 else 1
    return len(class_names)


def _describe_run(run: run_data.Run, scalar_runs: Sequence[str], scalar_versions: Mapping[str, str]) -> dict:
    index = run.index
    predictions = run.read(index.predictions) if index.predictions else None
    probe_count = predictions.values.shape[1] if predictions is not None and predictions.steps.size else None
    methods = []
    for method in sorted(set(index.attributions) | set(index.failures)):
        inputs = []
        for input_name, ref in sorted(index.attributions.get(method, {}).items()):
            series = run.describe(ref)
            if not series.steps.size:
                continue
            if probe_count is None:
                probe_count = series.shape[1]
            attribution_shape = list(series.shape[2:])
            inputs.append(
                {
                    "input": input_name,
                    "modality": ref.info.modality,
                    "feature_names": list(ref.info.feature_names),
                    "attribution_shape": attribution_shape,
                    "map_shape": list(aggregate.map_shape(attribution_shape, ref.info.modality)),
                    "layout": _layout(aggregate.map_shape(attribution_shape, ref.info.modality), ref.info.modality,
                                      ref.info.feature_names),
                    "steps": series.steps.tolist(),
                    "dropped_steps": list(series.dropped),
                    "config": ref.info.config,
                    "version": version_token(ref.version),
                }
            )
        methods.append({"method": method, "inputs": inputs, "failures": _failures(run, method)})
    prediction_info = index.predictions.info if index.predictions else metadata.TagInfo(metadata.PREDICTION)
    siblings = sibling_runs(run.name, scalar_runs)
    return {
        "run": run.name,
        "version": _run_version(index),
        "last_written": _last_written(index),
        "probe_count": probe_count,
        "has_labels": index.labels is not None,
        "class_names": list(prediction_info.class_names),
        "class_count": _class_count(predictions, prediction_info.class_names),
        "output_name": prediction_info.output_name,
        "prediction_steps": predictions.steps.tolist() if predictions is not None else [],
        "scalar_runs": siblings,
        "scalar_versions": {name: scalar_versions.get(name, "") for name in siblings},
        "probe_inputs": [
            {"input": name, "modality": ref.info.modality, "feature_names": list(ref.info.feature_names)}
            for name, ref in sorted(index.probes.items())
        ],
        "methods": methods,
    }


def _failures(run: run_data.Run, method: str) -> list:
    ref = run.index.failures.get(method)
    if ref is None:
        return []
    series = run.read(ref)
    return [
        {"step": int(step), "message": _text(np.asarray(value).ravel()[0] if np.size(value) else "")}
        for step, value in zip(series.steps, series.values)
    ]


def evolution_impl(
    run: run_data.Run,
    method: str,
    input_name: Optional[str],
    *,
    signed: bool = False,
    target: Optional[int] = None,
    steps: tuple = (None, None),
) -> dict:
    """The ``evolution`` answer: per step, the mean map over the counted probes."""
    ref = find_attribution(run, method, input_name)
    series = run.read(ref).select(*steps)
    modality = ref.info.modality
    importance, counts = _importance(run, series, modality, signed=signed, target=target)
    shape = list(importance.shape[1:])
    flat = _flatten(importance)
    return {
        "run": run.name,
        "method": method,
        "input": ref.info.input_name,
        "modality": modality,
        "signed": signed,
        "target": target,
        "steps": series.steps.tolist(),
        "map_shape": shape,
        "layout": _layout(shape, modality, ref.info.feature_names),
        "features": _layout(shape, modality, ref.info.feature_names)["names"],
        "importance": _floats(flat),
        "probe_counts": counts.tolist(),
        "order": aggregate.importance_order(flat).tolist() if flat.size else [],
        "range": _range(flat),
    }


def _layout(shape, modality: str, feature_names) -> dict:
    """The map's ``layout`` (docs/http_api.md): names for a 1-D map, the naming rule of any other map (a 224x224
    map would be ~50k strings per answer). A stand-in for the run model's layout owner (issue 9), same fields."""
    shape = [int(d) for d in shape]
    picture = len(shape) == 2
    if len(shape) == 1:
        names, pattern = aggregate.element_names(shape, modality, feature_names), None
    else:
        names = None
        pattern = "pixel ({0}, {1})" if picture and modality == metadata.IMAGE else ",".join(f"{{{d}}}" for d in range(len(shape)))
    kind = "vector" if len(shape) == 1 else "picture" if picture and modality == metadata.IMAGE else "grid"
    return {"kind": kind, "map_shape": shape, "picture": picture, "names": names, "name_pattern": pattern}


def _importance(run, series, modality, *, signed, target):
    if series.values.ndim < 3:  # a tag with no readable step at all
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    targets = _aligned_targets(run, series) if target is not None else None
    return aggregate.feature_importance(
        series.values, modality=modality, signed=signed, targets=targets, target=target
    )


def _aligned_targets(run: run_data.Run, series: run_data.TagSeries) -> np.ndarray:
    """``[steps, probes]`` targets at the steps of `series` (see `aggregate.align_targets`)."""
    if run.index.targets is None:
        return aggregate.align_targets(series.steps, [], [], series.values.shape[1])
    targets = run.read(run.index.targets)
    return aggregate.align_targets(series.steps, targets.steps, list(targets.values), series.values.shape[1])


def probe_impl(
    run: run_data.Run,
    method: str,
    input_name: Optional[str],
    probe: int,
    *,
    signed: bool = False,
    steps: tuple = (None, None),
) -> dict:
    """The ``probe`` answer: one probe's maps, predictions, targets, label and input across steps."""
    ref = find_attribution(run, method, input_name)
    full = run.read(ref)
    probe_count = full.values.shape[1] if full.steps.size else 0
    if probe >= probe_count:
        raise errors.InvalidArgumentError(
            f"probe={probe} is out of range: method {method!r} of run {run.name!r} has {probe_count} probes"
            + (f" (0..{probe_count - 1})" if probe_count else "")
        )
    series = full.select(*steps)
    modality = ref.info.modality
    attribution_shape = full.values.shape[2:]
    maps = aggregate.to_maps(series.values[:, probe], attribution_shape, modality, signed=signed)
    shape = list(aggregate.map_shape(attribution_shape, modality))
    flat = _flatten(maps)
    prediction_steps, predictions, targets = _probe_predictions(run, probe, steps)
    class_names = list(run.index.predictions.info.class_names) if run.index.predictions else []
    input_shape, input_values, input_range = _probe_input(run, ref.info.input_name, probe)
    return {
        "run": run.name,
        "method": method,
        "input": ref.info.input_name,
        "probe": probe,
        "modality": modality,
        "signed": signed,
        "steps": series.steps.tolist(),
        "map_shape": shape,
        "layout": _layout(shape, modality, ref.info.feature_names),
        "features": _layout(shape, modality, ref.info.feature_names)["names"],
        "attributions": _floats(flat),
        "range": _range(flat),
        "prediction_steps": prediction_steps,
        "predictions": predictions,
        "targets": targets,
        "class_names": class_names,
        "label": _probe_label(run, probe),
        "input_shape": input_shape,
        "input_values": input_values,
        "input_range": input_range,
    }


def _probe_predictions(run: run_data.Run, probe: int, steps: tuple) -> tuple:
    if run.index.predictions is None:
        return [], [], []
    predictions = run.read(run.index.predictions).select(*steps)
    keep = [i for i, row in enumerate(predictions.values) if row.ndim >= 1 and probe < row.shape[0]]
    rows = predictions.values[keep, probe] if keep else np.zeros((0, 0))
    targets = {}
    if run.index.targets is not None:
        series = run.read(run.index.targets)
        targets = {
            int(s): int(row[probe]) for s, row in zip(series.steps, series.values) if probe < row.shape[0]
        }
    prediction_steps = predictions.steps[keep].tolist()
    return (
        prediction_steps,
        [_floats(row.reshape(-1)) for row in rows],
        [targets.get(s) for s in prediction_steps],
    )


def _probe_label(run: run_data.Run, probe: int):
    if run.index.labels is None:
        return None
    labels = run.read(run.index.labels)
    if not labels.steps.size or probe >= labels.values.shape[1]:
        return None
    return _jsonable(labels.values[-1, probe])


def _probe_input(run: run_data.Run, input_name: str, probe: int) -> tuple:
    ref = run.index.probes.get(input_name)
    if ref is None:
        return None, None, None
    probes = run.read(ref)
    if not probes.steps.size or probe >= probes.values.shape[1] or probes.values.dtype.kind not in "biuf":
        return None, None, None
    value = probes.values[-1, probe].astype(np.float64)
    return list(value.shape), _floats(value.reshape(-1)), _range(value)


def stability_impl(
    run: run_data.Run,
    method: str,
    input_name: Optional[str],
    *,
    k: int = aggregate.DEFAULT_K,
    target: Optional[int] = None,
) -> dict:
    """The ``stability`` answer: rank stability of the global importance against the previous and last step."""
    ref = find_attribution(run, method, input_name)
    series = run.read(ref)
    importance, _ = _importance(run, series, ref.info.modality, signed=False, target=target)
    flat = _flatten(importance)
    stability = aggregate.rank_stability(flat, k) if series.steps.size else {"k": k}
    names = ("spearman_previous", "topk_previous", "spearman_last", "topk_last")
    return {
        "run": run.name,
        "method": method,
        "input": ref.info.input_name,
        "target": target,
        "k": stability["k"],
        "steps": series.steps.tolist(),
        **{name: _floats(stability.get(name, np.zeros(0)), rounded=False) for name in names},
    }


def agreement_impl(
    run: run_data.Run, input_name: Optional[str], *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
) -> dict:
    """The ``agreement`` answer: per pair of methods on one input, rank correlation at their common steps."""
    inputs = {name for by_input in run.index.attributions.values() for name in by_input}
    input_name = _pick_input(input_name, inputs, f"run {run.name!r}")
    importances = {}
    for method, by_input in run.index.attributions.items():
        ref = by_input.get(input_name)
        if ref is None:
            continue
        series = run.read(ref)
        if not series.steps.size:
            continue
        importance, _ = _importance(run, series, ref.info.modality, signed=False, target=target)
        importances[method] = (series.steps, importance)
    pairs = aggregate.agreement_by_shape(importances, k)
    sizes = [int(np.prod(importance.shape[1:])) for _, importance in importances.values()]
    return {
        "run": run.name,
        "input": input_name,
        "target": target,
        "k": min([k] + sizes),
        "methods": sorted(importances),
        "pairs": [
            {
                "methods": pair["methods"],
                "steps": pair["steps"].tolist(),
                "spearman": _floats(pair["spearman"], rounded=False),
                "topk": _floats(pair["topk"], rounded=False),
            }
            for pair in pairs
        ],
    }


def scalars_impl(run: str, series: Mapping[str, Mapping[str, dict]], max_points: int = MAX_SCALAR_POINTS) -> dict:
    """The ``scalars`` answer: the sibling runs' scalar series (steps and values), non-finite values as null.

    A tag with more than `max_points` points keeps `max_points` of them, evenly spread, its first and last
    included.
    """

    def tag_answer(points: dict) -> dict:
        steps = np.asarray(points["steps"], dtype=np.int64)
        values = np.asarray(points["values"], dtype=np.float64)
        if steps.size > max_points:
            keep = np.unique(np.linspace(0, steps.size - 1, max_points).round().astype(np.int64))
            steps, values = steps[keep], values[keep]
        return {"steps": steps.tolist(), "values": _floats(values, rounded=False)}

    return {
        "run": run,
        "runs": {name: {tag: tag_answer(points) for tag, points in tags.items()} for name, tags in series.items()},
    }


# ---- static files -------------------------------------------------------------------------------------


def resolve_static(name: str, root: str = STATIC_DIR) -> tuple:
    """``(path, mime type)`` of the static file `name` inside `root`; 404 for anything else.

    Refuses empty, absolute, backslashed, NUL-holding or dot-segment names, unknown types, and any path
    that resolves (through links too) outside `root`.
    """
    parts = name.split("/")
    if (
        not name
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in parts)
        or os.path.splitext(name)[1].lower() not in STATIC_TYPES
    ):
        raise errors.NotFoundError(f"no static file {name!r}")
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, *parts))
    if os.path.commonpath([real_root, path]) != real_root or not os.path.isfile(path):
        raise errors.NotFoundError(f"no static file {name!r}")
    return path, STATIC_TYPES[os.path.splitext(name)[1].lower()]


def _static_response(request, name: str):
    path, mime = resolve_static(name)
    with open(path, "rb") as f:
        contents = f.read()
    return http_util.Respond(request, contents, mime)


# ---- JSON ---------------------------------------------------------------------------------------------


def _json_response(request, body: dict):
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return http_util.Respond(request, text, "application/json")


def _floats(values: np.ndarray, *, rounded: bool = True) -> list:
    """Nested lists of floats, rounded to SIGNIFICANT_DIGITS relative to the largest magnitude; NaN/inf -> None."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if rounded and finite.any():
        peak = np.abs(values[finite]).max()
        if peak > 0:
            values = np.round(values, SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(peak))))
    if finite.all():
        return values.tolist()
    cleaned = values.astype(object)
    cleaned[~finite] = None
    return cleaned.tolist()


def _flatten(maps: np.ndarray) -> np.ndarray:
    """``[steps, *map_shape] -> [steps, prod(map_shape)]``, empty arrays included."""
    return maps.reshape(maps.shape[0], int(np.prod(maps.shape[1:])))


def _range(values: np.ndarray) -> Optional[list]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _jsonable(value):
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return np.vectorize(_text, otypes=[object])(value).tolist()
    if value.dtype.kind == "f":
        return _floats(value, rounded=False)
    return value.tolist()
