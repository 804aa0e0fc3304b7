"""What a tb_xai run holds, read through TensorBoard's data provider.

:func:`index_runs` turns a ``list_tensors`` answer into one :class:`RunIndex` per run (pure). :class:`Run`
pairs an index with a way to read a tag's every step as one :class:`TagSeries`; the plugin reads through
:class:`ProviderReader`, tests may pass any function.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import threading
from concurrent.futures import Future
from typing import Callable, Mapping, Optional

import numpy as np
from tensorboard.data import provider
from tensorboard.plugins.scalar import metadata as scalar_metadata

from tb_xai import aggregate, metadata

# `read_tensors` keeps at most `downsample` points per tag and returns nothing for 0: ask for every step.
ALL_STEPS = 2**31 - 1
# Tag descriptions kept (a few hundred bytes each, outside `--xai_cache_mb`): ample for any logdir's tags.
MAX_DESCRIPTIONS = 65536


@dataclasses.dataclass(frozen=True)
class TagSeries:
    """The readable steps of one tag: ``steps [n]`` ascending, ``values [n, *shape]``, and the ``dropped`` steps."""

    steps: np.ndarray
    values: np.ndarray
    dropped: tuple = ()

    @classmethod
    def from_points(cls, points) -> "TagSeries":
        """Stacks ``(step, ndarray)`` pairs; a step logged twice keeps its last value.

        Steps of another shape than the latest step's (the model or the probe changed mid-run) are left out
        and listed in ``dropped``, by the rule `tb_xai.load` follows too: see `aggregate.stack_steps`.
        """
        latest = {}
        for step, value in points:
            latest[int(step)] = value
        steps, values, dropped = aggregate.stack_steps(latest)
        return cls(steps, values, tuple(dropped))

    def select(self, start: Optional[int], stop: Optional[int]) -> "TagSeries":
        """The steps with ``start <= step < stop`` (either bound may be None)."""
        keep = np.ones(self.steps.shape, dtype=bool)
        if start is not None:
            keep &= self.steps >= start
        if stop is not None:
            keep &= self.steps < stop
        return TagSeries(self.steps[keep], self.values[keep], self.dropped)


@dataclasses.dataclass(frozen=True)
class TagDescription:
    """What a tag holds without its values: ``steps [n]``, the stacked values' ``shape`` ``(n, *shape)``, ``dropped``."""

    steps: np.ndarray
    shape: tuple
    dropped: tuple = ()

    @classmethod
    def of(cls, series: TagSeries) -> "TagDescription":
        return cls(series.steps.copy(), tuple(series.values.shape), tuple(series.dropped))


def series_nbytes(series: TagSeries) -> int:
    """Memory held by `series`' arrays, counting the objects an object array (strings, bytes) points to."""
    return _nbytes(series.steps) + _nbytes(series.values)


def _nbytes(array: np.ndarray) -> int:
    size = array.nbytes
    if array.dtype.hasobject:
        for item in array.flat:
            size += item.nbytes if isinstance(item, np.ndarray) else sys.getsizeof(item)
    return size


@dataclasses.dataclass(frozen=True)
class TagRef:
    """One tag of a run: its name, its parsed metadata and the listing's version of it."""

    tag: str
    info: metadata.TagInfo
    version: tuple = ()


@dataclasses.dataclass
class RunIndex:
    """The tb_xai tags of one run, by what they hold."""

    run: str
    attributions: dict = dataclasses.field(default_factory=dict)  # method -> input -> TagRef
    failures: dict = dataclasses.field(default_factory=dict)  # method -> TagRef
    probes: dict = dataclasses.field(default_factory=dict)  # input -> TagRef
    labels: Optional[TagRef] = None
    predictions: Optional[TagRef] = None
    targets: Optional[TagRef] = None


def index_runs(listing: Mapping[str, Mapping[str, object]]) -> dict:
    """Indexes a ``list_tensors(plugin_name=PLUGIN_NAME)`` answer: run -> :class:`RunIndex`.

    Tags whose payload version this release does not know are skipped.

    Args:
        listing: run -> tag -> time series with ``plugin_content``, ``max_step`` and ``max_wall_time``.
    """
    runs = {}
    for run, tags in listing.items():
        index = RunIndex(run)
        for tag, series in tags.items():
            info = metadata.parse_plugin_metadata(series.plugin_content)
            if info is None:
                continue
            ref = TagRef(tag, info, (series.max_step, series.max_wall_time))
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
        if index.attributions or index.failures or index.predictions:
            runs[run] = index
    return runs


@dataclasses.dataclass
class Run:
    """A run's index and a reader of its tags: ``read(ref) -> TagSeries``.

    ``describe(ref) -> TagDescription`` gives a tag's steps and shape; `describer`, when given, answers it
    (from a cache, without reading the tag's values), else the tag is read.
    """

    index: RunIndex
    read: Callable[[TagRef], TagSeries]
    describer: Optional[Callable[[TagRef], TagDescription]] = None

    @property
    def name(self) -> str:
        return self.index.run

    def describe(self, ref: TagRef) -> TagDescription:
        if self.describer is not None:
            return self.describer(ref)
        return TagDescription.of(self.read(ref))


class ProviderReader:
    """Reads tags through a data provider, one call per tag, keeping recent answers in memory.

    A cached answer is reused while the listing reports the same ``(max_step, max_wall_time)`` for its tag,
    so a run being written is read again once it grows. The cache holds at most `cache_bytes` of arrays
    (object arrays counted with the objects they hold). Concurrent requests for one tag at one version share a
    single read (the others wait for it and get its answer, or its exception). Each tag's steps and shape are
    kept apart from the arrays, per version, so describing a run does not read tags it described before.
    """

    def __init__(self, data_provider, cache_bytes: int, max_descriptions: int = MAX_DESCRIPTIONS):
        self._data_provider = data_provider
        self._cache_bytes = cache_bytes
        self._cache: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
        self._cache_total = 0
        self._max_descriptions = max_descriptions
        self._descriptions: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
        self._in_flight: "dict[tuple, Future]" = {}
        self._lock = threading.Lock()

    def runs(self, ctx, experiment_id: str) -> dict:
        """run name -> :class:`Run`, for every run holding tb_xai summaries."""
        listing = self._data_provider.list_tensors(
            ctx, experiment_id=experiment_id, plugin_name=metadata.PLUGIN_NAME
        )
        return {
            name: Run(
                index,
                self._reader(ctx, experiment_id, name),
                self._describer(ctx, experiment_id, name),
            )
            for name, index in index_runs(listing).items()
        }

    def _reader(self, ctx, experiment_id: str, run: str) -> Callable[[TagRef], TagSeries]:
        def read(ref: TagRef) -> TagSeries:
            return self._read(ctx, experiment_id, run, ref)

        return read

    def _describer(self, ctx, experiment_id: str, run: str) -> Callable[[TagRef], TagDescription]:
        def describe(ref: TagRef) -> TagDescription:
            key = (experiment_id, run, ref.tag)
            with self._lock:
                known = self._descriptions.get(key)
                if known is not None and known[0] == ref.version:
                    self._descriptions.move_to_end(key)
                    return known[1]
            return TagDescription.of(self._read(ctx, experiment_id, run, ref))  # the read records it too

        return describe

    def _read(self, ctx, experiment_id: str, run: str, ref: TagRef) -> TagSeries:
        key = (experiment_id, run, ref.tag)
        flight_key = (key, ref.version)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == ref.version:
                self._cache.move_to_end(key)
                return cached[1]
            future = self._in_flight.get(flight_key)
            leader = future is None
            if leader:
                future = self._in_flight[flight_key] = Future()
        if not leader:
            return future.result()
        try:
            data = self._data_provider.read_tensors(
                ctx,
                experiment_id=experiment_id,
                plugin_name=metadata.PLUGIN_NAME,
                downsample=ALL_STEPS,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=[ref.tag]),
            )
            points = data.get(run, {}).get(ref.tag, [])
            series = TagSeries.from_points((p.step, p.numpy) for p in points)
            description = TagDescription.of(series)
            size = series_nbytes(series)
        except BaseException as e:
            with self._lock:
                del self._in_flight[flight_key]
            future.set_exception(e)
            raise
        try:
            with self._lock:
                try:
                    self._describe_locked(key, ref.version, description)
                    self._store_locked(key, ref.version, series, size)
                finally:
                    del self._in_flight[flight_key]  # always, so a later read starts afresh
        except BaseException as e:
            future.set_exception(e)  # waiters get the failure rather than hanging
            raise
        future.set_result(series)
        return series

    def _describe_locked(self, key: tuple, version: tuple, description: TagDescription) -> None:
        self._descriptions[key] = (version, description)
        self._descriptions.move_to_end(key)
        while len(self._descriptions) > self._max_descriptions:
            self._descriptions.popitem(last=False)

    def _store(self, key: tuple, version: tuple, series: TagSeries) -> None:
        size = series_nbytes(series)
        with self._lock:
            self._store_locked(key, version, series, size)

    def _store_locked(self, key: tuple, version: tuple, series: TagSeries, size: int) -> None:
        stale = self._cache.pop(key, None)
        if stale is not None:
            self._cache_total -= stale[2]
        if size > self._cache_bytes:
            return
        self._cache[key] = (version, series, size)
        self._cache_total += size
        while self._cache_total > self._cache_bytes:
            _, (_, _, evicted) = self._cache.popitem(last=False)
            self._cache_total -= evicted

    def scalar_series(self, ctx, experiment_id: str, runs: list) -> dict:
        """run -> tag -> ``{"steps", "wall_times", "values"}`` of the scalars of `runs`, every step."""
        if not runs:
            return {}
        data = self._data_provider.read_scalars(
            ctx,
            experiment_id=experiment_id,
            plugin_name=scalar_metadata.PLUGIN_NAME,
            downsample=ALL_STEPS,
            run_tag_filter=provider.RunTagFilter(runs=runs),
        )
        return {
            run: {
                tag: {
                    "steps": [p.step for p in points],
                    "wall_times": [p.wall_time for p in points],
                    "values": [p.value for p in points],
                }
                for tag, points in sorted(tags.items())
            }
            for run, tags in sorted(data.items())
        }

    def scalar_runs(self, ctx, experiment_id: str) -> list:
        """Names of the runs holding scalar data (the Keras `train`/`validation` runs, among others)."""
        listing = self._data_provider.list_scalars(
            ctx, experiment_id=experiment_id, plugin_name=scalar_metadata.PLUGIN_NAME
        )
        return sorted(run for run, tags in listing.items() if tags)
