"""The run model: what one tb_xai run holds, whoever reads it.

``tb_xai.load`` (event files) and the TensorBoard plugin (its data provider) both turn what they read into
this model: :func:`index_tags` files a run's tags by kind from ``(tag, content, version)`` triples, and a
:class:`Run` pairs that index with a function reading one tag's every step as a :class:`TagSeries`.
:mod:`tb_xai.query` answers every question on top of it, so both sides give the same answer.

Damaged or foreign data is left out here, with the reason kept, never raised: a tag whose metadata does not
decode or whose payload version is unknown is left out of the index (``RunIndex.skipped``); a tag whose
tensors the views cannot use (see :func:`check_series`) is read as a :class:`TagSeries` with a ``problem``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable, Iterable, Optional

import numpy as np

from tb_xai import aggregate, metadata


class NotFound(KeyError):
    """A run, method, input or tag that is not there (or was left out, and why). HTTP 404."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is read by people
        return str(self.args[0]) if self.args else ""


class BadQuery(ValueError):
    """A question that cannot be answered as asked (an ambiguous input, a probe out of range). HTTP 400."""


@dataclasses.dataclass(frozen=True)
class TagRef:
    """One tag of a run: its name, its parsed metadata and the version its source reports for it."""

    tag: str
    info: metadata.TagInfo
    version: tuple = ()


@dataclasses.dataclass
class RunIndex:
    """The tb_xai tags of one run, by what they hold, and the tags left out with why."""

    run: str
    attributions: dict = dataclasses.field(default_factory=dict)  # method -> input -> TagRef
    failures: dict = dataclasses.field(default_factory=dict)  # method -> TagRef
    probes: dict = dataclasses.field(default_factory=dict)  # input -> TagRef
    tokens: dict = dataclasses.field(default_factory=dict)  # text input -> TagRef of its TOKENS tag
    labels: Optional[TagRef] = None
    predictions: Optional[TagRef] = None
    targets: Optional[TagRef] = None
    skipped: dict = dataclasses.field(default_factory=dict)  # tag -> reason

    def refs(self) -> list:
        """Every indexed tag."""
        refs = [self.labels, self.predictions, self.targets, *self.failures.values(), *self.probes.values(),
                *self.tokens.values()]
        refs += [ref for by_input in self.attributions.values() for ref in by_input.values()]
        return [ref for ref in refs if ref is not None]

    @property
    def holds_data(self) -> bool:
        return bool(self.attributions or self.failures or self.predictions)


def decode_metadata(content) -> tuple:
    """``(TagInfo, None)`` for a usable payload, ``(None, reason)`` for one that does not decode or is unknown."""
    try:
        info = metadata.parse_plugin_metadata(content)
    except Exception as error:  # noqa: BLE001 - any undecodable payload is left out, with why
        return None, f"its metadata does not decode ({type(error).__name__}: {error})"
    if info is None:
        return None, (
            f"its payload version is not {metadata.PROTO_VERSION}, the one this release of tb_xai reads "
            "(written by another release)"
        )
    return info, None


def index_tags(run: str, tags: Iterable[tuple], decode: Callable = decode_metadata) -> RunIndex:
    """Files the tags of `run` by kind.

    Args:
        run: the run's name.
        tags: ``(tag, plugin content bytes, version)`` triples; the version is any tuple that changes when the
            tag is written.
        decode: ``content -> (TagInfo | None, reason | None)`` (a cache of :func:`decode_metadata` may be passed).
    """
    index = RunIndex(run)
    for tag, content, version in tags:
        info, reason = decode(content)
        if info is None:
            index.skipped[tag] = reason
            continue
        ref = TagRef(tag, info, tuple(version))
        if info.kind == metadata.ATTRIBUTION:
            index.attributions.setdefault(info.method, {})[info.input_name] = ref
        elif info.kind == metadata.FAILURE:
            index.failures[info.method] = ref
        elif info.kind == metadata.PROBE:
            index.probes[info.input_name] = ref
        elif info.kind == metadata.LABEL:
            index.labels = ref
        elif info.kind == metadata.PREDICTION:
            index.predictions = ref
        elif info.kind == metadata.TARGET:
            index.targets = ref
        elif info.kind == metadata.TOKENS:
            problem = check_text_config(info.config)
            if problem is None:
                index.tokens[info.input_name] = ref
            else:
                index.skipped[tag] = problem
        else:
            index.skipped[tag] = f"its kind {info.kind} is not one this release of tb_xai knows"
    return index


def check_text_config(config: dict) -> Optional[str]:
    """Why a TOKENS tag's config (`metadata.TEXT_CONFIG_KEYS`) cannot be used, or None if it can: ``padding_id``
    an integer or null, ``mask_id`` an integer, ``padding_input`` a name or null."""
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    padding_id, mask_id = config.get("padding_id"), config.get("mask_id")
    padding_input = config.get("padding_input")
    if padding_id is not None and not integer(padding_id):
        return f"its padding_id must be an integer or null; the tag holds {padding_id!r}"
    if not integer(mask_id):
        return f"its mask_id must be an integer; the tag holds {mask_id!r}"
    if padding_input is not None and not (isinstance(padding_input, str) and padding_input):
        return f"its padding_input must be an input name or null; the tag holds {padding_input!r}"
    return None


@dataclasses.dataclass(frozen=True)
class TagSeries:
    """The readable steps of one tag: ``steps [n]`` ascending, ``values [n, *shape]``, the ``dropped`` steps,
    and the ``problem`` that makes the tag unusable (None when it is usable)."""

    steps: np.ndarray
    values: np.ndarray
    dropped: tuple = ()
    problem: Optional[str] = None
    # Results computed from these values (importances), kept as long as the series itself is kept.
    derived: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_points(cls, points, kind: Optional[int] = None, modality: str = "") -> "TagSeries":
        """Stacks ``(step, ndarray)`` pairs; a step logged twice keeps its last value.

        Steps of another shape than the latest step's (the model or the probe changed mid-run) are left out
        and listed in ``dropped`` (`aggregate.stack_steps`). With `kind` (and the tag's `modality`), values the
        views cannot use give a series with a ``problem`` (:func:`check_series`).
        """
        latest = {}
        for step, value in points:
            latest[int(step)] = value
        try:
            steps, values, dropped = aggregate.stack_steps(latest)
        except (TypeError, ValueError) as error:  # values that numpy cannot stack into one array
            return cls.unusable(f"its steps do not stack into one array ({error})")
        series = cls(steps, values, tuple(dropped))
        problem = None if kind is None else check_series(kind, series, modality)
        return series if problem is None else cls.unusable(problem)

    @classmethod
    def unusable(cls, problem: str) -> "TagSeries":
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0,)), (), problem)

    def select(self, start: Optional[int], stop: Optional[int]) -> "TagSeries":
        """The steps with ``start <= step < stop`` (either bound may be None), as views (steps are sorted)."""
        if start is None and stop is None:
            return self
        first = 0 if start is None else int(np.searchsorted(self.steps, start, side="left"))
        last = len(self.steps) if stop is None else int(np.searchsorted(self.steps, stop, side="left"))
        last = max(first, last)
        return TagSeries(self.steps[first:last], self.values[first:last], self.dropped, self.problem)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, counting the objects an object array (strings, bytes) points to."""
        return _nbytes(self.steps) + _nbytes(self.values)


def _nbytes(array: np.ndarray) -> int:
    size = array.nbytes
    if array.dtype.hasobject:
        for item in array.flat:
            size += item.nbytes if isinstance(item, np.ndarray) else sys.getsizeof(item)
    return size


_REAL = "biuf"
_TEXT = "SUO"


def check_series(kind: int, series: TagSeries, modality: str = "") -> Optional[str]:
    """Why a tag of `kind` (and `modality`) holding `series` cannot be used by the views, or None if it can.

    Per step: attributions are real numbers ``[probes, *shape]`` with at least one attribution axis;
    predictions real ``[probes, ...]``; targets integers ``[probes]``; probe inputs and labels ``[probes, ...]``
    (labels may be strings); a failure a non-empty string; tokens strings ``[probes, positions]``. A text
    input's attributions (and its token ids) are ``[probes, positions]``: one value per token.
    """
    values = series.values
    if not series.steps.size:
        return None
    per_step = values.ndim - 1
    dtype = values.dtype
    if kind == metadata.ATTRIBUTION:
        if dtype.kind not in _REAL:
            return f"attributions must be real numbers; the tag holds {dtype}"
        if per_step < 2:
            return f"attributions must be [probes, *shape] per step; the tag holds {per_step}-d values"
        if modality == metadata.TEXT and per_step != 2:
            return ("text attributions must be [probes, positions] per step (one value per token); the tag holds "
                    f"{per_step}-d values of shape {values.shape[2:]} per probe")
    elif kind == metadata.PREDICTION:
        if dtype.kind not in _REAL:
            return f"predictions must be real numbers; the tag holds {dtype}"
        if per_step < 1:
            return "predictions must be [probes, outputs] per step; the tag holds 0-d values"
    elif kind == metadata.TARGET:
        if dtype.kind not in "iu":
            return f"targets must be integer class indices; the tag holds {dtype}"
        if per_step != 1:
            return f"targets must be [probes] per step; the tag holds {per_step}-d values"
    elif kind in (metadata.PROBE, metadata.LABEL):
        what = "probe inputs" if kind == metadata.PROBE else "labels"
        if per_step < 1:
            return f"{what} must be [probes, ...]; the tag holds 0-d values"
        if dtype.kind not in _REAL + _TEXT:
            return f"{what} must be numbers or strings; the tag holds {dtype}"
        if kind == metadata.PROBE and modality == metadata.TEXT and (
            per_step != 2 or dtype.kind not in _REAL or not np.all(np.mod(values, 1) == 0)
        ):
            return f"text token ids must be whole numbers [probes, positions]; the tag holds {dtype} of shape {values.shape[1:]}"
    elif kind == metadata.TOKENS:
        if dtype.kind not in _TEXT:
            return f"tokens must be strings; the tag holds {dtype}"
        if per_step != 2:
            return f"tokens must be [probes, positions] strings per step; the tag holds {per_step}-d values"
    elif kind == metadata.FAILURE:
        if dtype.kind not in _TEXT or values[0].size == 0:
            return f"a failure must hold its message as a string; the tag holds {dtype} of shape {values.shape[1:]}"
    return None


def scalar_series(points) -> tuple:
    """``(steps [n] int64 ascending, values [n] float64)`` of ``(step, value)`` pairs; a step written twice keeps
    its last value (a resumed run)."""
    latest = {}
    for step, value in points:
        latest[int(step)] = float(value)
    steps = np.array(sorted(latest), dtype=np.int64)
    return steps, np.array([latest[s] for s in steps.tolist()], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class TagDescription:
    """What a tag holds without its values: ``steps [n]``, the stacked ``shape`` ``(n, *shape)``, ``dropped``,
    and its ``problem``."""

    steps: np.ndarray
    shape: tuple
    dropped: tuple = ()
    problem: Optional[str] = None

    @classmethod
    def of(cls, series: TagSeries) -> "TagDescription":
        return cls(series.steps.copy(), tuple(series.values.shape), tuple(series.dropped), series.problem)


@dataclasses.dataclass
class Run:
    """A run's index and a reader of its tags: ``read(ref) -> TagSeries``.

    ``describe(ref) -> TagDescription`` gives a tag's steps, shape and problem; `describer`, when given,
    answers it (from a cache, without reading the tag's values again), else the tag is read. `data_loss`
    lists the damaged stretches of the run's event files, where the source reports them; `scalar_reader` reads
    the run's scalar summaries (see `scalars`).
    """

    index: RunIndex
    read: Callable[[TagRef], TagSeries]
    describer: Optional[Callable[[TagRef], TagDescription]] = None
    data_loss: tuple = ()  # damaged stretches of the run's event files, where the source reports them
    # The run's scalar summaries (the callback's quality figures): ``() -> {tag: (steps, values)}``.
    scalar_reader: Optional[Callable[[], dict]] = None

    @property
    def name(self) -> str:
        return self.index.run

    def describe(self, ref: TagRef) -> TagDescription:
        if self.describer is not None:
            return self.describer(ref)
        return TagDescription.of(self.read(ref))

    def usable(self, ref: TagRef) -> TagSeries:
        """The tag's series; :class:`NotFound` with the reason if its tensors cannot be used."""
        series = self.read(ref)
        if series.problem is not None:
            raise NotFound(f"tag {ref.tag!r} of run {self.name!r} is left out: {series.problem}")
        return series

    def optional(self, ref: Optional[TagRef]) -> Optional[TagSeries]:
        """The tag's series, or None when the tag is absent or unusable (the run's `skipped` says why)."""
        if ref is None:
            return None
        series = self.read(ref)
        return None if series.problem is not None else series

    def scalars(self) -> dict:
        """tag -> ``(steps [n] int64 ascending, values [n] float64)`` of the run's scalar summaries; {} where the
        source reads none."""
        return {} if self.scalar_reader is None else self.scalar_reader()

    def skipped(self) -> dict:
        """tag -> reason, for every tag left out: at indexing, or because its tensors cannot be used."""
        skipped = dict(self.index.skipped)
        for ref in self.index.refs():
            problem = self.describe(ref).problem
            if problem is not None:
                skipped[ref.tag] = problem
        return dict(sorted(skipped.items()))
