"""Writes tb_xai summaries into event files.

The writer needs no particular Keras backend: it writes TensorBoard's event-file format (TFRecords of `Event`
protos, as `tensorboard.summary.writer.event_file_writer` does) itself, synchronously, with a vectorized
CRC-32C (TensorBoard's writer computes the checksums in pure Python on a thread, about 1 ms per 4 KB event).
Every `*_pb` function builds the `Summary` proto a write would produce (handy in tests); the `SummaryWriter`
methods write it at a step.
"""

from __future__ import annotations

import functools
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


# ------------------------------------------------------------------------------------ CRC-32C (Castagnoli)
# The TFRecord checksum. A record's CRC is linear over GF(2) in its bytes: each block of `_BLOCK` bytes is
# summed from a table of every (position, byte) contribution, then adjacent blocks are combined pairwise
# (the earlier one shifted past the later one's length by a 4 x 256 table per level). Records of one level
# (power-of-two block count) are checksummed together, as rows; short ones take the table loop in Python.
_POLY = 0x82F63B78
_BLOCK = 64
_SHORT = 48  # bytes: below this, the Python loop


def _crc_tables():
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)

    def zero_byte(x):  # the register after one more byte 0
        return (x >> np.uint32(8)) ^ table[x & np.uint32(0xFF)]

    images = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(_BLOCK):
        images = zero_byte(images)
    shifts = []
    for _ in range(40):  # level l: past 2^l blocks of zeros (far beyond any record)
        tab = _byte_tables(images)
        shifts.append(tab)
        images = _shifted(tab, images)
    block = np.empty((_BLOCK, 256), np.uint32)  # [position, byte]: the register after the block, from 0
    block[-1] = table
    for j in range(_BLOCK - 2, -1, -1):
        block[j] = zero_byte(block[j + 1])
    return table.tolist(), block.ravel(), (np.arange(_BLOCK) * 256).astype(np.intp), shifts


def _byte_tables(images: np.ndarray) -> np.ndarray:
    """``[..., 32]`` the image of each of a register's bits under a linear map -> ``[..., 4, 256]``: the image of
    each value of each of its bytes (xor of its bits' images, built bit by bit)."""
    images = images.reshape(images.shape[:-1] + (4, 8))
    tables = np.zeros(images.shape[:-1] + (256,), np.uint32)
    for bit in range(8):
        tables[..., 1 << bit:2 << bit] = tables[..., :1 << bit] ^ images[..., bit:bit + 1]
    return tables


def _shifted(tab: np.ndarray, x: np.ndarray) -> np.ndarray:
    return tab[0][x & 0xFF] ^ tab[1][(x >> 8) & 0xFF] ^ tab[2][(x >> 16) & 0xFF] ^ tab[3][x >> 24]


_CRC_TABLE, _CRC_BLOCK, _CRC_OFFSETS, _CRC_SHIFTS = _crc_tables()
_DISTANCE_LEVELS = 8  # records up to 2^8 blocks (16 KB) combine their blocks by the distance tables
_BYTE_SHIFTS = np.array([0, 8, 16, 24], dtype=np.uint32)


@functools.lru_cache(maxsize=1)
def _distance_tables() -> np.ndarray:
    """``[d, byte m of the register, its value]`` flattened: a register shifted past d blocks of zeros, by byte."""
    images = np.empty((1 << _DISTANCE_LEVELS, 32), np.uint32)  # [d, bit]: the image of each register bit
    images[0] = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for level in range(_DISTANCE_LEVELS):  # distances [2^l, 2^(l+1)): those below, shifted past 2^l blocks
        images[1 << level:2 << level] = _shifted(_CRC_SHIFTS[level], images[:1 << level])
    return _byte_tables(images).ravel()


@functools.lru_cache(maxsize=None)
def _distance_index(level: int) -> np.ndarray:
    """``[blocks, 4]`` offsets into `_distance_tables` of each block (distance ``blocks - 1 - k``) and byte."""
    blocks = 1 << level
    distance = blocks - 1 - np.arange(blocks)
    return ((distance[:, None] * 4 + np.arange(4)) * 256).astype(np.intp)


def crc32c_many(records) -> list:
    """The CRC-32C of each bytes object in `records` (initial value and final xor 0xFFFFFFFF, as TFRecords use)."""
    out = [0] * len(records)
    levels: dict = {}
    for i, data in enumerate(records):
        n = len(data)
        if n < _SHORT:
            crc, table = 0xFFFFFFFF, _CRC_TABLE
            for b in data:
                crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
            out[i] = crc ^ 0xFFFFFFFF
        else:
            levels.setdefault((-(-n // _BLOCK) - 1).bit_length(), []).append(i)
    for level, rows in levels.items():
        size = _BLOCK << level
        lengths = np.array([len(records[i]) for i in rows], dtype=np.intp)
        # Each record at the end of its row: zeros before a register of 0 leave it 0.
        starts = np.arange(len(rows), dtype=np.intp) * size + size - lengths
        buffer = np.zeros(len(rows) * size, np.uint8)
        first = np.cumsum(lengths) - lengths
        buffer[np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))] = np.frombuffer(
            b"".join([records[i] for i in rows]), np.uint8)
        # The initial register xored into the first 4 bytes gives the same CRC as starting from it.
        buffer[starts[:, None] + np.arange(4)] ^= np.uint8(0xFF)
        crc = np.bitwise_xor.reduce(_CRC_BLOCK.take(buffer.reshape(len(rows), -1, _BLOCK) + _CRC_OFFSETS), axis=2)
        if level <= _DISTANCE_LEVELS:  # each block's register shifted past the blocks after it, in one gather
            blocks = 1 << level
            index = _distance_index(level) + ((crc[:, :, None] >> _BYTE_SHIFTS) & 0xFF).astype(np.intp)
            crc = np.bitwise_xor.reduce(_distance_tables().take(index).reshape(len(rows), blocks * 4), axis=1)
        else:
            for tab in _CRC_SHIFTS[:level]:
                crc = crc.reshape(len(rows), -1, 2)
                crc = _shifted(tab, crc[..., 0]) ^ crc[..., 1]
        for i, value in zip(rows, crc.reshape(-1).tolist()):
            out[i] = value ^ 0xFFFFFFFF
    return out


def crc32c(data: bytes) -> int:
    """The CRC-32C of `data`."""
    return crc32c_many([data])[0]


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of a TFRecord's length and data fields."""
    return _masked(crc32c(data))


def tf_records(datas) -> bytes:
    """TFRecords of the bytes objects in `datas`, each: length, masked CRC of the length, data, masked CRC of
    the data."""
    headers = [struct.pack("<Q", len(data)) for data in datas]
    crcs = crc32c_many(headers + list(datas))
    out = []
    for i, (header, data) in enumerate(zip(headers, datas)):
        out += [header, struct.pack("<I", _masked(crcs[i])), data, struct.pack("<I", _masked(crcs[len(datas) + i]))]
    return b"".join(out)


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
