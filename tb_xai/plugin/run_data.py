"""The plugin's side of the run model: tb_xai runs read through TensorBoard's data provider, cached.

:class:`ProviderReader` turns ``list_tensors`` into one :class:`tb_xai.runmodel.Run` per run (the index is kept
per run and rebuilt only when one of its tags was written), and reads a tag's every step in one call, keeping
the decoded arrays between requests until the tag grows. :class:`AnswerCache` keeps recent route answers per
run version. Both let concurrent requests for the same thing share one computation.
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future
from typing import Callable, Hashable, Mapping

from tensorboard.data import provider
from tensorboard.plugins.scalar import metadata as scalar_metadata

from tb_xai import metadata, runmodel
from tb_xai.runmodel import RunIndex, TagDescription, TagRef, TagSeries, index_tags  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)

# `read_tensors` keeps at most `downsample` points per tag and returns nothing for 0: ask for every step.
ALL_STEPS = 2**31 - 1
# Tag descriptions kept (a few hundred bytes each, outside `--xai_cache_mb`): ample for any logdir's tags.
MAX_DESCRIPTIONS = 65536
#: Default of `--xai_cache_mb`: decoded tags kept between requests.
DEFAULT_CACHE_MB = 512
# Decoded tag metadata kept, by content bytes (a run's tags share few distinct contents).
MAX_DECODED = 65536


def series_nbytes(series: TagSeries) -> int:
    """Memory held by `series`' arrays, counting the objects an object array (strings, bytes) points to."""
    return series.nbytes


class _Flights:
    """One computation per key at a time: later callers wait for the first one's result (or exception)."""

    def __init__(self, lock: threading.Lock):
        self._lock = lock
        self._in_flight: "dict[Hashable, Future]" = {}

    def lead(self, key) -> tuple:
        """``(future, leader)``; call with the lock held."""
        future = self._in_flight.get(key)
        if future is not None:
            return future, False
        future = self._in_flight[key] = Future()
        return future, True

    def land(self, key) -> None:
        """Call with the lock held once the leader's result is stored (or it failed)."""
        self._in_flight.pop(key, None)


class ProviderReader:
    """Reads tb_xai runs through a data provider, one call per tag, keeping recent answers in memory.

    A cached tag is reused while the listing reports the same ``(max_step, max_wall_time)`` for it, so a run
    being written is read again once it grows. The cache holds at most `cache_bytes` of arrays (object arrays
    counted with the objects they hold). Concurrent requests for one tag at one version share a single read
    (the others wait for it and get its answer, or its exception). Each tag's steps, shape and problem are
    kept apart from the arrays, per version, so describing a run does not read tags it described before.
    A tag left out (undecodable metadata, unknown version, unusable tensors) is logged once per run and reason.
    """

    def __init__(self, data_provider, cache_bytes: int, max_descriptions: int = MAX_DESCRIPTIONS):
        self._data_provider = data_provider
        self._cache_bytes = cache_bytes
        self._cache: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
        self._cache_total = 0
        self._max_descriptions = max_descriptions
        self._descriptions: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
        self._indexes: "dict[tuple, tuple]" = {}
        self._decoded: "collections.OrderedDict[bytes, tuple]" = collections.OrderedDict()
        self._warned: set = set()
        self._lock = threading.Lock()
        self._flights = _Flights(self._lock)

    @property
    def _in_flight(self) -> dict:
        return self._flights._in_flight

    # ---- runs and their index -------------------------------------------------------------------------
    def runs(self, ctx, experiment_id: str) -> dict:
        """run name -> :class:`tb_xai.runmodel.Run`, for every run holding tb_xai summaries."""
        listing = self._data_provider.list_tensors(
            ctx, experiment_id=experiment_id, plugin_name=metadata.PLUGIN_NAME
        )
        runs = {}
        for name, tags in listing.items():
            index = self._index(experiment_id, name, tags)
            if index.holds_data or index.skipped:
                runs[name] = runmodel.Run(
                    index, self._reader(ctx, experiment_id, name), self._describer(ctx, experiment_id, name),
                    scalar_reader=self._scalar_reader(ctx, experiment_id, name),
                )
        with self._lock:  # runs gone from the listing (a deleted directory) free their index
            for key in [k for k in self._indexes if k[0] == experiment_id and k[1] not in listing]:
                del self._indexes[key]
        return runs

    def _index(self, experiment_id: str, run: str, tags: Mapping[str, object]) -> RunIndex:
        signature = tuple(sorted((tag, s.max_step, s.max_wall_time) for tag, s in tags.items()))
        key = (experiment_id, run)
        with self._lock:
            known = self._indexes.get(key)
            if known is not None and known[0] == signature:
                return known[1]
        index = index_tags(
            run,
            ((tag, s.plugin_content, (s.max_step, s.max_wall_time)) for tag, s in tags.items()),
            decode=self._decode,
        )
        for tag, reason in index.skipped.items():
            self._warn_once(run, tag, reason)
        with self._lock:
            self._indexes[key] = (signature, index)
        return index

    def _decode(self, content) -> tuple:
        content = bytes(content) if isinstance(content, (bytes, bytearray)) else content
        with self._lock:
            known = self._decoded.get(content) if isinstance(content, bytes) else None
        if known is not None:
            return known
        decoded = runmodel.decode_metadata(content)
        if isinstance(content, bytes):
            with self._lock:
                self._decoded[content] = decoded
                while len(self._decoded) > MAX_DECODED:
                    self._decoded.popitem(last=False)
        return decoded

    def _warn_once(self, run: str, tag: str, reason: str) -> None:
        with self._lock:
            if (run, tag, reason) in self._warned:
                return
            self._warned.add((run, tag, reason))
        logger.warning("tb_xai: run %r: tag %r is left out: %s", run, tag, reason)

    # ---- reading tags ---------------------------------------------------------------------------------
    def _reader(self, ctx, experiment_id: str, run: str) -> Callable[[TagRef], TagSeries]:
        def read(ref: TagRef) -> TagSeries:
            return self._read(ctx, experiment_id, run, ref)

        return read

    def _scalar_reader(self, ctx, experiment_id: str, run: str) -> Callable[[], dict]:
        """The run's scalar summaries (the callback's quality figures), every step, read when asked for."""
        def scalars() -> dict:
            data = self._data_provider.read_scalars(
                ctx,
                experiment_id=experiment_id,
                plugin_name=scalar_metadata.PLUGIN_NAME,
                downsample=ALL_STEPS,
                run_tag_filter=provider.RunTagFilter(runs=[run]),
            )
            return {tag: runmodel.scalar_series((p.step, p.value) for p in points)
                    for tag, points in data.get(run, {}).items()}

        return scalars

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
            future, leader = self._flights.lead(flight_key)
        if not leader:
            return future.result()
        try:
            series = self._fetch(ctx, experiment_id, run, ref)
            description = TagDescription.of(series)
            size = series.nbytes
        except BaseException as e:
            with self._lock:
                self._flights.land(flight_key)
            future.set_exception(e)
            raise
        if series.problem is not None:
            self._warn_once(run, ref.tag, series.problem)
        try:
            with self._lock:
                try:
                    self._describe_locked(key, ref.version, description)
                    self._store_locked(key, ref.version, series, size)
                finally:
                    self._flights.land(flight_key)  # always, so a later read starts afresh
        except BaseException as e:
            future.set_exception(e)  # waiters get the failure rather than hanging
            raise
        future.set_result(series)
        return series

    def _fetch(self, ctx, experiment_id: str, run: str, ref: TagRef) -> TagSeries:
        """The tag's every step; a tag whose tensors do not decode or cannot be used gets a ``problem``."""
        try:
            data = self._data_provider.read_tensors(
                ctx,
                experiment_id=experiment_id,
                plugin_name=metadata.PLUGIN_NAME,
                downsample=ALL_STEPS,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=[ref.tag]),
            )
        except (ValueError, TypeError, KeyError) as error:  # the provider decodes the tensors as it reads
            return TagSeries.unusable(f"its tensors do not decode ({type(error).__name__}: {error})")
        points = data.get(run, {}).get(ref.tag, [])
        return TagSeries.from_points(((p.step, p.numpy) for p in points), ref.info.kind, ref.info.modality)

    def _describe_locked(self, key: tuple, version: tuple, description: TagDescription) -> None:
        self._descriptions[key] = (version, description)
        self._descriptions.move_to_end(key)
        while len(self._descriptions) > self._max_descriptions:
            self._descriptions.popitem(last=False)

    def _store(self, key: tuple, version: tuple, series: TagSeries) -> None:
        size = series.nbytes
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

    # ---- the Keras scalars next to a run ---------------------------------------------------------------
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


class AnswerCache:
    """Recent route answers (encoded bodies) by key, at most `max_bytes` in all, least recently used out first.

    A key names the route, its parameters and the run's version, so an answer is reused only while the run is
    unchanged. Concurrent requests for one key share one computation.
    """

    def __init__(self, max_bytes: int):
        self._max_bytes = max_bytes
        self._answers: "collections.OrderedDict[Hashable, bytes]" = collections.OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self._flights = _Flights(self._lock)

    def get(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        if self._max_bytes <= 0:
            return compute()
        with self._lock:
            body = self._answers.get(key)
            if body is not None:
                self._answers.move_to_end(key)
                return body
            future, leader = self._flights.lead(key)
        if not leader:
            return future.result()
        try:
            body = compute()
        except BaseException as e:
            with self._lock:
                self._flights.land(key)
            future.set_exception(e)
            raise
        with self._lock:
            self._flights.land(key)
            if len(body) <= self._max_bytes:
                stale = self._answers.pop(key, None)
                self._total += len(body) - (len(stale) if stale is not None else 0)
                self._answers[key] = body
                while self._total > self._max_bytes:
                    _, evicted = self._answers.popitem(last=False)
                    self._total -= len(evicted)
        future.set_result(body)
        return body
