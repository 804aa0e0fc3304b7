"""Writes tb_xai summaries into event files.

The writer needs no particular Keras backend: it writes TensorBoard's event-file format (TFRecords of `Event`
protos, as `tensorboard.summary.writer.event_file_writer` does) itself, synchronously, its checksums by
google-crc32c's C implementation (`tb_xai.event_records`; TensorBoard's writer computes them in pure Python on a
thread, about 1 ms per 4 KB event).
Every `*_pb` function builds the `Summary` proto a write would produce (handy in tests); the `SummaryWriter`
methods write it at a step.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
import weakref
from typing import Optional

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

from tb_xai import metadata, run_lock
from tb_xai.event_records import tf_records


def _summary_pb(tag: str, value: np.ndarray, summary_metadata) -> summary_pb2.Summary:
    """`summary_metadata` None: a value without metadata, as a writer writes a tag it already described."""
    tensor = tensor_util.make_tensor_proto(value)
    if summary_metadata is None:
        return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor)])
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=tensor)]
    )


def probe_pb(input_name: str, value, *, feature_names=None, modality: str = "") -> summary_pb2.Summary:
    value = np.asarray(value)
    return _summary_pb(
        metadata.probe_tag(input_name),
        value,
        metadata.create_summary_metadata(
            metadata.PROBE, input_name=input_name, feature_names=feature_names, modality=modality
        ),
    )


def labels_pb(value) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.LABELS_TAG, np.asarray(value), metadata.create_summary_metadata(metadata.LABEL)
    )


def predictions_pb(value, *, output_name: str = "", class_names=None, config=None,
                   describe: bool = True) -> summary_pb2.Summary:
    """`describe=False` (every `*_pb` with it): no metadata, for a tag the writer has described already
    (`SummaryWriter.described`), which would drop it anyway."""
    return _summary_pb(
        metadata.PREDICTIONS_TAG,
        np.asarray(value, dtype=np.float32),
        metadata.create_summary_metadata(
            metadata.PREDICTION, output_name=output_name, class_names=class_names, config=config
        ) if describe else None,
    )


def targets_pb(value, *, output_name: str = "", config=None, describe: bool = True) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.TARGETS_TAG,
        np.asarray(value, dtype=np.int32),
        metadata.create_summary_metadata(metadata.TARGET, output_name=output_name, config=config)
        if describe else None,
    )


def attribution_pb(
    method: str,
    input_name: str,
    value,
    *,
    feature_names=None,
    modality: str = "",
    config=None,
    describe: bool = True,
) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.attribution_tag(method, input_name),
        np.asarray(value, dtype=np.float32),
        metadata.create_summary_metadata(
            metadata.ATTRIBUTION,
            method=method,
            input_name=input_name,
            feature_names=feature_names,
            modality=modality,
            config=config,
        ) if describe else None,
    )


def failure_pb(method: str, message: str) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.failure_tag(method),
        np.array([message.encode("utf-8")], dtype=object),
        metadata.create_summary_metadata(metadata.FAILURE, method=method),
    )


def tokens_pb(input_name: str, tokens, *, padding_id=None, mask_id: int = 0,
              padding_input=None) -> summary_pb2.Summary:
    """A text input's probes as token strings ``[probes, positions]``, with how padding is read (see
    `tb_xai.metadata`: the TOKENS tag)."""
    strings = np.asarray(tokens, dtype=object)
    if strings.ndim != 2:
        raise ValueError(f"tokens must be [probes, positions] strings; received shape {strings.shape}")
    encoded = np.vectorize(lambda t: str(t).encode("utf-8"), otypes=[object])(strings)
    config = {"padding_id": None if padding_id is None else int(padding_id), "mask_id": int(mask_id),
              "padding_input": padding_input}
    return _summary_pb(
        metadata.tokens_tag(input_name),
        encoded,
        metadata.create_summary_metadata(metadata.TOKENS, input_name=input_name, modality=metadata.TEXT,
                                         config=config),
    )


_file_ids = itertools.count()


class _EventFile:
    """An event file as TensorBoard's `EventFileWriter` writes it (the same name pattern and first event),
    written synchronously: the events added are checksummed together and written by `flush`."""

    def __init__(self, logdir: str, filename_suffix: str = ""):
        self.path = os.path.join(logdir, "events.out.tfevents.%010d.%s.%s.%s" % (
            time.time(), socket.gethostname(), os.getpid(), next(_file_ids))) + filename_suffix
        self._file = open(self.path, "wb")
        self._pending: list = []
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2",
                                       source_metadata=event_pb2.SourceMetadata(
                                           writer="tensorboard.summary.writer.event_file_writer")))
        self.flush()

    def add_event(self, event: event_pb2.Event) -> None:
        self._pending.append(event.SerializeToString())
        if len(self._pending) >= 1024:  # a writer never flushed still writes as it goes
            self._write()

    def _write(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._file.write(tf_records(pending))

    def flush(self) -> None:
        self._write()
        self._file.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()

    def __del__(self):  # dropped without close(): what was written still reaches the file
        try:
            if not self._file.closed:
                self.close()
        except Exception:
            pass


class SummaryWriter:
    """Appends tb_xai summaries to one run directory. Created lazily, flushed after every logged step.

    The writer claims its run directory until :meth:`close` (`tb_xai.run_lock`): when another live writer
    holds `run_dir`, it writes to a sibling run instead, with a warning; ``run_dir`` is where it writes.
    """

    def __init__(self, run_dir: str):
        self._lock = run_lock.claim(run_dir)
        # A writer dropped without close() (a fit that raised) gives the directory back when it is collected.
        self._release = weakref.finalize(self, self._lock.release)
        self.run_dir = self._lock.run_dir
        self._writer: Optional[_EventFile] = None
        self._described: set = set()

    def write(self, summary: summary_pb2.Summary, step: int) -> None:
        if self._writer is None:
            os.makedirs(self.run_dir, exist_ok=True)
            self._writer = _EventFile(self.run_dir, filename_suffix=".tb_xai")
            self._described = set()
        # Loaders take a tag's metadata from its first event in a file; repeating it every step (feature
        # names included) would only grow the file.
        for value in summary.value:
            if value.tag in self._described:
                value.ClearField("metadata")
            self._described.add(value.tag)
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        )

    def described(self, tag: str) -> bool:
        """Whether this writer's event file holds `tag`'s metadata already (later values are written without)."""
        return self._writer is not None and tag in self._described

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._release()
