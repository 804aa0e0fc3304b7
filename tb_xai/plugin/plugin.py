"""The tb_xai TensorBoard plugin: routes parse the request, pure ``*_impl`` functions compute the answer.

Route reference with every field: ``docs/http_api.md``. The answers come from :mod:`tb_xai.query`, the same
functions ``tb_xai.load`` calls, over runs read by :class:`tb_xai.plugin.run_data.ProviderReader`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import os
import threading
from typing import Mapping, Optional, Sequence

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard.plugins.scalar import metadata as scalar_metadata
from werkzeug import wrappers

from tb_xai import aggregate, findings as findings_lib, metadata, quality as quality_lib, query
from tb_xai.plugin import event_files, run_data
from tb_xai.runmodel import BadQuery, NotFound, Run, RunIndex

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
# Encoded answers kept per plugin: a quarter of `--xai_cache_mb`, at most this much.
MAX_ANSWER_CACHE_BYTES = 64 * 2**20
# Noise floors prepared in the background (`XaiPlugin._prepare`) remembered, at most, before starting afresh.
MAX_PREPARED = 4096

logger = logging.getLogger(__name__)


def _http_errors(impl):
    """Runs a route, turning the query layer's errors into TensorBoard's 404 and 400."""

    @functools.wraps(impl)
    def route(*args, **kwargs):
        try:
            return impl(*args, **kwargs)
        except NotFound as error:
            raise errors.NotFoundError(str(error))
        except BadQuery as error:
            raise errors.InvalidArgumentError(str(error))

    return route


class XaiPlugin(base_plugin.TBPlugin):
    """Serves the attribution history of tb_xai runs to the frontend."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        cache_bytes = getattr(context.flags, "xai_cache_mb", run_data.DEFAULT_CACHE_MB) * 2**20
        self._data_provider = context.data_provider
        self._reader = run_data.ProviderReader(context.data_provider, cache_bytes=cache_bytes)
        self._answers = run_data.AnswerCache(min(MAX_ANSWER_CACHE_BYTES, cache_bytes // 4))
        # The Python loader (it comes with a multiplexer) stops at a corrupt record; the Rust loader reads on.
        self._files = event_files.EventFileCheck(getattr(context, "logdir", None),
                                                 serve_from_files=getattr(context, "multiplexer", None) is not None)
        self._prepared: set = set()
        self._prepared_lock = threading.Lock()
        # The k the stability view was last asked for (the dashboard's own default first), latest last.
        self._stability_ks = [aggregate.DEFAULT_K]
        self._background = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tb_xai-floors")

    def get_plugin_apps(self):
        return {
            "/tokens": self._cached_route(tokens_request),
            "/runs": self._runs_route,
            "/evolution": self._cached_route(evolution_request),
            "/probe": self._cached_route(probe_request),
            "/stability": self._cached_route(stability_request, scalars=True),
            "/agreement": self._cached_route(agreement_request),
            "/findings": self._cached_route(findings_request, scalars=True),
            "/quality": self._cached_route(quality_request, scalars=True),
            "/probes": self._cached_route(probes_request),
            "/scalars": self._scalars_route,
            "/index.js": self._index_js_route,
            "/static/*": self._static_route,
        }

    def is_active(self) -> bool:
        return False  # The data provider's plugin listing says when a run holds our tags.

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Attributions")

    def _runs(self, request) -> dict:
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        return self._files.patch(self._reader.runs(ctx, eid))

    def _cached_route(self, answer, scalars: bool = False):
        """A route whose answer depends only on its parameters and the run's data: kept per run version (and
        per version of the run's quality scalars, for an answer that reads them)."""

        @wrappers.Request.application
        @_http_errors
        def route(request):
            run = find_run(self._runs(request), _required(request, "run"))
            key = (answer.__name__, plugin_util.experiment_id(request.environ), run.name,
                   tuple(sorted(request.args.items(multi=True))), run_version(run.index),
                   self._quality_scalar_version(request, run.name) if scalars else None)
            body = self._answers.get(key, lambda: _encode(answer(run, request.args)))
            if answer is stability_request:
                self._remember_k(request.args)
            if answer in PREPARING:
                self._prepare(run, request.args)
            return http_util.Respond(request, body, "application/json")

        return route

    def _remember_k(self, args) -> None:
        try:
            k = _k(args)
        except errors.InvalidArgumentError:
            return
        with self._prepared_lock:
            if self._stability_ks[-1] != k:
                self._stability_ks = [x for x in self._stability_ks if x != k][-1:] + [k]

    def _prepare(self, run: Run, args) -> None:
        """After a view of one method's attributions (its tag now read), that method's noise floor (the stability
        view's band; the findings' floors of a one-input method) is computed in the background, one at a time,
        once per run version, method, input and k: the stability view opened next finds it. At the request's k
        if it names one, else at the last two the stability view was asked for (the server's default before)."""
        method = args.get("method")
        if method is None:
            return
        try:
            ks = [_k(args)] if "k" in args else None
        except errors.InvalidArgumentError:
            return
        with self._prepared_lock:
            for k in ks or self._stability_ks[::-1]:
                key = (run.name, run_version(run.index), method, args.get("input"), k)
                if key in self._prepared:
                    continue
                if len(self._prepared) >= MAX_PREPARED:
                    self._prepared.clear()
                self._prepared.add(key)
                self._background.submit(_prepare_noise_floor, run, method, args.get("input"), k)

    def _quality_scalar_version(self, request, run: str) -> str:
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        listing = self._data_provider.list_scalars(
            ctx, experiment_id=eid, plugin_name=scalar_metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        )
        return quality_scalar_version(listing.get(run, {}))

    @wrappers.Request.application
    @_http_errors
    def _runs_route(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        listing = self._data_provider.list_scalars(
            ctx, experiment_id=eid, plugin_name=scalar_metadata.PLUGIN_NAME
        )
        versions = scalar_versions(listing)
        quality = {name: quality_scalar_version(tags) for name, tags in listing.items()}
        body = runs_impl(self._runs(request), sorted(versions), versions, quality)
        return _json_response(request, body)

    @wrappers.Request.application
    @_http_errors
    def _scalars_route(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        run = find_run(self._runs(request), _required(request, "run"))
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
    return _required_arg(request.args, name)


def _required_arg(args, name: str) -> str:
    value = args.get(name)
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


def _k(args) -> int:
    return parse_int(args.get("k", str(aggregate.DEFAULT_K)), "k", minimum=1)


def evolution_request(run: Run, args) -> dict:
    return evolution_impl(
        run, _required_arg(args, "method"), args.get("input"),
        signed=parse_bool(args.get("signed"), "signed"), target=parse_target(args.get("target")),
        steps=parse_step_range(args.get("steps")), by=parse_by(args.get("by")),
    )


def parse_by(value: Optional[str]) -> str:
    """Parses ``by``: absent -> ``position``, else one of `query.BY` (400 naming it otherwise)."""
    if value is None or value == "":
        return query.POSITION
    if value not in query.BY:
        raise errors.InvalidArgumentError(f"by must be one of {list(query.BY)}; received by={value!r}")
    return value


def tokens_request(run: Run, args) -> dict:
    return tokens_impl(run, args.get("input"))


def probe_request(run: Run, args) -> dict:
    return probe_impl(
        run, _required_arg(args, "method"), args.get("input"),
        parse_int(_required_arg(args, "probe"), "probe", minimum=0),
        signed=parse_bool(args.get("signed"), "signed"), steps=parse_step_range(args.get("steps")),
    )


def stability_request(run: Run, args) -> dict:
    return stability_impl(
        run, _required_arg(args, "method"), args.get("input"), k=_k(args), target=parse_target(args.get("target"))
    )


def agreement_request(run: Run, args) -> dict:
    return agreement_impl(run, args.get("input"), k=_k(args), target=parse_target(args.get("target")))


#: Views after which the method's noise floor is computed in the background (`XaiPlugin._prepare`).
PREPARING = (evolution_request, probe_request)


# ---- lookups ------------------------------------------------------------------------------------------


def _prepare_noise_floor(run: Run, method: str, input_name: Optional[str], k: int) -> None:
    try:
        query.noise_floor(run, method, input_name, k=k)
    except Exception:  # noqa: BLE001 - a request for this view reports the error; here it only costs the head start
        logger.debug("tb_xai: noise floor of %s/%s not prepared", run.name, method, exc_info=True)


def find_run(runs: Mapping[str, Run], name: str) -> Run:
    """The run called `name`; 404 listing the known runs otherwise."""
    if name not in runs:
        raise errors.NotFoundError(f"run {name!r} holds no tb_xai data; known runs: {sorted(runs)}")
    return runs[name]


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


def quality_scalar_version(tags: Mapping[str, object]) -> str:
    """One token over a run's quality scalars (``xai/<method>/<figure>``, from a ``list_scalars`` answer's
    tags of the run): it changes whenever the callback writes a figure."""
    return ";".join(sorted(f"{tag}={version_token((s.max_step, s.max_wall_time))}"
                           for tag, s in tags.items() if quality_lib.parse_scalar_tag(tag) is not None))


def run_version(index: RunIndex) -> str:
    """One token over every tb_xai tag of the run: it changes whenever any of them is written."""
    return ";".join(sorted(f"{ref.tag}={version_token(ref.version)}" for ref in index.refs()))


def runs_impl(
    runs: Mapping[str, Run],
    scalar_runs: Sequence[str],
    scalar_versions: Optional[Mapping[str, str]] = None,
    quality_versions: Optional[Mapping[str, str]] = None,
) -> dict:
    """The ``runs`` answer: every tb_xai run and what it holds (`quality_versions`: run -> the version of its
    quality scalars, `quality_scalar_version`)."""
    versions = scalar_versions or {}
    answer = {"runs": [_describe_run(runs[name], scalar_runs, versions) for name in sorted(runs)]}
    for described in answer["runs"]:
        described["quality_version"] = (quality_versions or {}).get(described["run"], "")
    return answer


def last_written(index: RunIndex) -> Optional[float]:
    """The latest wall time any tb_xai tag of the run was written at (seconds since the epoch), None if none."""
    times = [float(ref.version[1]) for ref in index.refs() if ref.version]
    return max(times) if times else None


def _describe_run(run: Run, scalar_runs: Sequence[str], scalar_versions: Mapping[str, str]) -> dict:
    index = run.index
    predictions = query.predictions(run)
    methods = []
    for method in query.methods(run):
        inputs = []
        for input_name, ref in sorted(index.attributions.get(method, {}).items()):
            description = run.describe(ref)
            if description.problem is not None or not description.steps.size:
                continue
            attribution_shape = list(description.shape[2:])
            layout = query.map_layout(ref, attribution_shape)
            inputs.append(
                {
                    "input": input_name,
                    "modality": ref.info.modality,
                    "feature_names": list(ref.info.feature_names),
                    "attribution_shape": attribution_shape,
                    "map_shape": list(layout.map_shape),
                    "layout": layout.to_json(),
                    "steps": description.steps.tolist(),
                    "dropped_steps": list(description.dropped),
                    "config": ref.info.config,
                    "version": version_token(ref.version),
                    **({"text": _text_input_fields(run, input_name).get("text")}
                       if ref.info.modality == metadata.TEXT else {}),
                }
            )
        failures = [{"step": step, "message": message} for step, _, message in query.failures(run, method)]
        methods.append({"method": method, "inputs": inputs, "failures": failures})
    prediction_info = index.predictions.info if index.predictions else metadata.TagInfo(metadata.PREDICTION)
    siblings = sibling_runs(run.name, scalar_runs)
    return {
        "run": run.name,
        "version": run_version(index),
        "last_written": last_written(index),
        "probe_count": query.probe_count(run),
        "has_labels": query.labels(run) is not None,
        "class_names": list(prediction_info.class_names),
        "class_count": query.class_count(run),
        "output_name": prediction_info.output_name,
        "prediction_steps": predictions.steps.tolist() if predictions is not None else [],
        "scalar_runs": siblings,
        "scalar_versions": {name: scalar_versions.get(name, "") for name in siblings},
        "probe_inputs": [
            {"input": name, "modality": ref.info.modality, "feature_names": list(ref.info.feature_names),
             **_text_input_fields(run, name)}
            for name, ref in sorted(index.probes.items())
            if run.optional(ref) is not None
        ],
        "methods": methods,
        "skipped": [{"tag": tag, "reason": reason} for tag, reason in run.skipped().items()],
        "data_loss": [loss.to_json() for loss in run.data_loss],
    }


def _text_input_fields(run: Run, name: str) -> dict:
    """The ``layout`` and ``text`` fields of a text input in the ``runs`` answer ({} for other inputs); a text
    input whose tokens or padding cannot be read gets ``text: null`` (its views answer 404 with the reason)."""
    if name not in query.text_inputs(run):
        return {}
    try:
        probe = query.text_probe(run, name)
    except NotFound:
        return {"layout": None, "text": None}
    return {"layout": probe.layout.to_json(), "text": probe.to_json()}


@_http_errors
def tokens_impl(run: Run, input_name: Optional[str]) -> dict:
    """The ``tokens`` answer: a text input's probes as token strings, with which positions are padding."""
    probe = query.text_probe(run, input_name)
    return {
        "run": run.name,
        "input": probe.input,
        "tokens": probe.tokens.tolist(),
        "padding": probe.padding.tolist(),
        **{key: value for key, value in probe.to_json().items() if key != "positions"},
    }


def _probe_text_fields(run: Run, ref, full, probe: int) -> dict:
    """``tokens`` and ``padding`` of one probe of a text input ({} for other inputs)."""
    if ref.info.modality != metadata.TEXT:
        return {}
    text = query.text_probe_of(run, ref, full)
    return {"tokens": text.tokens[probe].tolist(), "padding": text.padding[probe].tolist()}


@_http_errors
def evolution_impl(
    run: Run,
    method: str,
    input_name: Optional[str],
    *,
    signed: bool = False,
    target: Optional[int] = None,
    steps: tuple = (None, None),
    by: str = query.POSITION,
) -> dict:
    """The ``evolution`` answer: per step, the mean map over the counted probes (``by="word"``: per word)."""
    result = query.importance(run, method, input_name, signed=signed, target=target, steps=steps, by=by)
    flat = result.flat
    layout = result.layout
    return {
        "run": run.name,
        "method": method,
        "input": result.ref.info.input_name,
        "modality": result.ref.info.modality,
        "by": result.by,
        "signed": signed,
        "target": target,
        "steps": result.steps.tolist(),
        "map_shape": list(layout.map_shape),
        "layout": layout.to_json(),
        "features": layout.to_json()["names"],
        "importance": _floats(flat),
        "probe_counts": result.counts.tolist(),
        "order": result.order().tolist(),
        "range": _range(flat),
        **({"counts": result.occurrences.tolist()} if result.occurrences is not None else {}),
    }


@_http_errors
def probe_impl(
    run: Run,
    method: str,
    input_name: Optional[str],
    probe: int,
    *,
    signed: bool = False,
    steps: tuple = (None, None),
) -> dict:
    """The ``probe`` answer: one probe's maps, predictions, targets, label and input across steps."""
    ref, full = query.attribution(run, method, input_name)
    probe_count = full.values.shape[1] if full.steps.size else 0
    if probe >= probe_count:
        raise BadQuery(
            f"probe={probe} is out of range: method {method!r} of run {run.name!r} has {probe_count} probes"
            + (f" (0..{probe_count - 1})" if probe_count else "")
        )
    series = full.select(*steps)
    modality = ref.info.modality
    attribution_shape = full.values.shape[2:]
    layout = query.map_layout(ref, attribution_shape)
    maps = aggregate.to_maps(series.values[:, probe], attribution_shape, modality, signed=signed)
    flat = maps.reshape(maps.shape[0], layout.size)
    prediction_steps, predictions, targets = _probe_predictions(run, probe, steps)
    input_shape, input_values, input_range = _probe_input(run, ref.info.input_name, probe)
    return {
        "run": run.name,
        "method": method,
        "input": ref.info.input_name,
        "probe": probe,
        "modality": modality,
        "signed": signed,
        "steps": series.steps.tolist(),
        "map_shape": list(layout.map_shape),
        "layout": layout.to_json(),
        "features": layout.to_json()["names"],
        "attributions": _floats(flat),
        "range": _range(flat),
        "prediction_steps": prediction_steps,
        "predictions": predictions,
        "targets": targets,
        "class_names": query.class_names(run),
        "label": _probe_label(run, probe),
        "input_shape": input_shape,
        "input_values": input_values,
        "input_range": input_range,
        **_probe_text_fields(run, ref, full, probe),
    }


def _probe_predictions(run: Run, probe: int, steps: tuple) -> tuple:
    predictions = query.predictions(run)
    if predictions is None:
        return [], [], []
    predictions = predictions.select(*steps)
    if probe >= predictions.values.shape[1]:
        return [], [], []
    rows = predictions.values[:, probe]
    targets = {}
    series = run.optional(run.index.targets)
    if series is not None and probe < series.values.shape[1]:
        targets = {int(s): int(row[probe]) for s, row in zip(series.steps, series.values)}
    prediction_steps = predictions.steps.tolist()
    return (
        prediction_steps,
        _floats(np.asarray(rows).reshape(len(prediction_steps), -1)),
        [targets.get(s) for s in prediction_steps],
    )


def _probe_label(run: Run, probe: int):
    labels = query.labels(run)
    if labels is None or probe >= labels.shape[0]:
        return None
    return _jsonable(labels[probe])


def _probe_input(run: Run, input_name: str, probe: int) -> tuple:
    probes = query.probe_values(run, input_name)
    if probes is None or probe >= probes.shape[0] or probes.dtype.kind not in "biuf":
        return None, None, None
    value = probes[probe].astype(np.float64)
    return list(value.shape), _floats(value.reshape(-1)), _range(value)


@_http_errors
def stability_impl(
    run: Run,
    method: str,
    input_name: Optional[str],
    *,
    k: int = aggregate.DEFAULT_K,
    target: Optional[int] = None,
) -> dict:
    """The ``stability`` answer: rank stability of the global importance against the previous and last step."""
    stability = query.stability(run, method, input_name, k=k, target=target)
    names = ("spearman_previous", "topk_previous", "spearman_last", "topk_last")
    return {
        "run": run.name,
        "method": method,
        "input": stability["input"],
        "target": target,
        "k": stability["k"],
        "steps": stability["steps"].tolist(),
        **{name: _floats(stability[name], rounded=False) for name in names},
        "noise": noise_answer(run, method, stability["input"], k=k, target=target),
    }


@_http_errors
def agreement_impl(
    run: Run, input_name: Optional[str], *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
) -> dict:
    """The ``agreement`` answer: per pair of methods on one input, rank correlation at their common steps."""
    agreement = query.agreement(run, input_name, k=k, target=target)
    return {
        "run": run.name,
        "input": agreement["input"],
        "target": target,
        "k": agreement["k"],
        "methods": agreement["methods"],
        "pairs": [
            {
                "methods": pair["methods"],
                "steps": pair["steps"].tolist(),
                "spearman": _floats(pair["spearman"], rounded=False),
                "topk": _floats(pair["topk"], rounded=False),
            }
            for pair in agreement["pairs"]
        ],
    }


# ---- findings, quality, the probe menu (tb_xai.findings, tb_xai.quality through tb_xai.query) ------------


def _optional_int(args, name: str) -> Optional[int]:
    value = args.get(name)
    return None if value in (None, "") else parse_int(value, name)


def findings_request(run: Run, args) -> dict:
    return findings_impl(run, thresholds=findings_lib.Thresholds(k=_k(args)),
                         reference_step=_optional_int(args, "reference_step"))


def quality_request(run: Run, args) -> dict:
    return quality_impl(run, _required_arg(args, "method"), k=_k(args),
                        reference_step=_optional_int(args, "reference_step"))


def probes_request(run: Run, args) -> dict:
    return probes_impl(run, args.get("method") or None, args.get("input"), step=_optional_int(args, "step"))


@_http_errors
def findings_impl(
    run: Run, *, thresholds: Optional[findings_lib.Thresholds] = None, reference_step: Optional[int] = None
) -> dict:
    """The ``findings`` answer: `run.findings()`'s list, each with where the dashboard shows it (``open``)."""
    try:
        found = query.findings(run, thresholds=thresholds, reference_step=reference_step)
    except BadQuery:
        raise
    except ValueError as error:  # a reference step that is not logged
        raise BadQuery(str(error))
    return {
        "run": run.name,
        "findings": [dict(f, open=query.open_view(run, f)) for f in found],
        "kinds": list(findings_lib.KINDS),
    }


@_http_errors
def quality_impl(
    run: Run, method: str, *, k: int = aggregate.DEFAULT_K, reference_step: Optional[int] = None
) -> dict:
    """The ``quality`` answer: `run.metrics(method)`'s figures that hold a value, with labels and thresholds."""
    try:
        answer = query.quality(run, method, k=k, reference_step=reference_step)
    except BadQuery:
        raise
    except ValueError as error:  # a reference step that is not logged
        raise BadQuery(str(error))
    answer["figures"] = {name: _floats(values, rounded=False) for name, values in answer["figures"].items()}
    return {"run": run.name, "method": method, **answer}


@_http_errors
def probes_impl(
    run: Run, method: Optional[str], input_name: Optional[str], *, step: Optional[int] = None
) -> dict:
    """The ``probes`` answer: each probe's label, prediction at `step`, flips and explanation change."""
    summary = query.probe_summary(run, method, input_name, step=step)
    return {"run": run.name, "method": method, "input": input_name, **summary}


def noise_answer(
    run: Run, method: str, input_name: Optional[str], *, k: int = aggregate.DEFAULT_K, target: Optional[int] = None
) -> dict:
    """The ``noise`` field of the ``stability`` answer (`query.noise_floor`), per step, null where unknown."""
    noise = query.noise_floor(run, method, input_name, k=k, target=target)
    names = ("spearman_floor", "ndcg_floor", "seed_spearman", "seed_ndcg")
    return {name: _floats(noise[name], rounded=False) for name in names}


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


def _encode(body: dict) -> bytes:
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _json_response(request, body: dict):
    return http_util.Respond(request, _encode(body), "application/json")


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


def _range(values: np.ndarray) -> Optional[list]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _jsonable(value):
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return np.vectorize(query.text, otypes=[object])(value).tolist()
    if value.dtype.kind == "f":
        return _floats(value, rounded=False)
    return value.tolist()
