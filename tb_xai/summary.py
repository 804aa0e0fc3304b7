"""Writes tb_xai summaries into event files.

The writer uses TensorBoard's own event-file writer, not TensorFlow's, so that logging needs no particular
Keras backend. Every `*_pb` function builds the `Summary` proto a write would produce (handy in tests); the
`SummaryWriter` methods write it at a step.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Optional

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from tb_xai import metadata, run_lock


def _summary_pb(tag: str, value: np.ndarray, summary_metadata) -> summary_pb2.Summary:
    tensor = tensor_util.make_tensor_proto(value)
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


def predictions_pb(value, *, output_name: str = "", class_names=None, config=None) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.PREDICTIONS_TAG,
        np.asarray(value, dtype=np.float32),
        metadata.create_summary_metadata(
            metadata.PREDICTION, output_name=output_name, class_names=class_names, config=config
        ),
    )


def targets_pb(value, *, output_name: str = "", config=None) -> summary_pb2.Summary:
    return _summary_pb(
        metadata.TARGETS_TAG,
        np.asarray(value, dtype=np.int32),
        metadata.create_summary_metadata(metadata.TARGET, output_name=output_name, config=config),
    )


def attribution_pb(
    method: str,
    input_name: str,
    value,
    *,
    feature_names=None,
    modality: str = "",
    config=None,
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
        ),
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
        self._writer: Optional[EventFileWriter] = None
        self._described: set = set()

    def write(self, summary: summary_pb2.Summary, step: int) -> None:
        if self._writer is None:
            os.makedirs(self.run_dir, exist_ok=True)
            self._writer = EventFileWriter(self.run_dir, filename_suffix=".tb_xai")
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

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._release()
