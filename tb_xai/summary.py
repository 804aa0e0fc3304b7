"""Writes tb_xai summaries into event files.

The writer needs no particular Keras backend: it writes TensorBoard's event-file format (TFRecords of `Event`
protos, as `tensorboard.summary.writer.event_file_writer` does) itself, synchronously, with a vectorized
CRC-32C; TensorBoard's writer computes the checksums in pure Python on a thread, about 1 ms per 4 KB event.
Every `*_pb` function builds the `Summary` proto a write would produce (handy in tests); the `SummaryWriter`
methods write it at a step.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
import weakref
from typing import Optional

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
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


# ------------------------------------------------------------------------------------ CRC-32C (Castagnoli)
# The TFRecord checksum. A record's CRC is linear over GF(2) in its bytes: each block of `_BLOCK` bytes is
# summed from a table of every (position, byte) contribution, then adjacent blocks are combined pairwise
# (the earlier one shifted past the later one's length by a 4 x 256 table per level). Short records take the
# table loop in Python, which is faster below a few hundred bytes.
_POLY = 0x82F63B78
_BLOCK = 256
_SHORT = 400  # bytes: below this, the Python loop


def _crc_tables():
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)

    def zero_byte(x):  # the register after one more byte 0
        return (x >> np.uint32(8)) ^ table[x & np.uint32(0xFF)]

    bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)

    def byte_tables(images):  # the image of each of the register's 32 bits -> 4 x 256 (one per byte)
        return np.stack([np.bitwise_xor.reduce(np.where(bits, images[None, 8 * m:8 * m + 8], np.uint32(0)), axis=1)
                         for m in range(4)])

    images = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(_BLOCK):
        images = zero_byte(images)
    shifts = []
    for _ in range(40):  # level l: past 2^l blocks of zeros (far beyond any record)
        tab = byte_tables(images)
        shifts.append(tab)
        images = tab[0][images & 0xFF] ^ tab[1][(images >> 8) & 0xFF] ^ tab[2][(images >> 16) & 0xFF] ^ tab[3][images >> 24]
    block = np.empty((_BLOCK, 256), np.uint32)  # [position, byte]: the register after the block, from 0
    block[-1] = table
    for j in range(_BLOCK - 2, -1, -1):
        block[j] = zero_byte(block[j + 1])
    return table.tolist(), block.ravel(), (np.arange(_BLOCK) * 256).astype(np.intp), shifts


_CRC_TABLE, _CRC_BLOCK, _CRC_OFFSETS, _CRC_SHIFTS = _crc_tables()


def crc32c(data: bytes) -> int:
    """The CRC-32C of `data` (initial value and final xor 0xFFFFFFFF, as TFRecords use)."""
    n = len(data)
    if n < _SHORT:
        crc, table = 0xFFFFFFFF, _CRC_TABLE
        for b in data:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    # The initial register xored into the first 4 bytes gives the same CRC as starting from it.
    blocks = -(-n // _BLOCK)
    levels = (blocks - 1).bit_length()
    size = _BLOCK << levels
    buffer = np.zeros(size, np.uint8)  # zeros before a register of 0 leave it 0: pad at the front
    buffer[size - n:] = np.frombuffer(data, np.uint8)
    buffer[size - n:size - n + 4] ^= np.frombuffer(b"\xff\xff\xff\xff", np.uint8)
    crc = np.bitwise_xor.reduce(_CRC_BLOCK.take(buffer.reshape(-1, _BLOCK) + _CRC_OFFSETS), axis=1)
    for tab in _CRC_SHIFTS[:levels]:
        crc = crc.reshape(-1, 2)
        x = crc[:, 0]
        crc = tab[0][x & 0xFF] ^ tab[1][(x >> 8) & 0xFF] ^ tab[2][(x >> 16) & 0xFF] ^ tab[3][x >> 24] ^ crc[:, 1]
    return int(crc[0]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of a TFRecord's length and data fields."""
    x = crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tf_record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


_file_ids = itertools.count()


class _EventFile:
    """An event file as TensorBoard's `EventFileWriter` writes it (the same name pattern and first event),
    written synchronously into the file's buffer; `flush` puts it on disk."""

    def __init__(self, logdir: str, filename_suffix: str = ""):
        self.path = os.path.join(logdir, "events.out.tfevents.%010d.%s.%s.%s" % (
            time.time(), socket.gethostname(), os.getpid(), next(_file_ids))) + filename_suffix
        self._file = open(self.path, "wb")
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2",
                                       source_metadata=event_pb2.SourceMetadata(
                                           writer="tensorboard.summary.writer.event_file_writer")))
        self.flush()

    def add_event(self, event: event_pb2.Event) -> None:
        self._file.write(tf_record(event.SerializeToString()))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()


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

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._release()
