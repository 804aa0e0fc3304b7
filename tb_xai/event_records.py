"""Reads the records of a TFRecord event file, keeping every intact record and reporting the damaged ones.

TensorBoard's own readers stop at the first damaged record (a bad checksum in the middle of a file hides every
step after it). Here each record's length and data checksums are checked; a record whose data is corrupt is
skipped and reported, and a corrupt length header is resynchronized on the next valid header, so every
readable record is kept. A record cut short at the end of the file (a write under way) ends the file quietly.

Record framing: ``uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)``.
Checksums are CRC-32C (Castagnoli), computed by google-crc32c's C implementation: a pure-Python byte loop (as in
TensorBoard's own writer) would take seconds on a run of tens of megabytes. `tf_records` frames records for
writing (`tb_xai.summary`).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import List, Tuple

import google_crc32c
import numpy as np

_MASK_DELTA = 0xA282EAD8
_HEADER = 12  # length (8) + its checksum (4)
_FOOTER = 4


def crc32c_many(data: bytes, starts, lengths) -> np.ndarray:
    """CRC-32C of the byte ranges ``data[start:start + length]`` (google-crc32c's C implementation)."""
    value = google_crc32c.value
    return np.array([value(data[s:s + n]) for s, n in zip(np.asarray(starts).tolist(), np.asarray(lengths).tolist())],
                    dtype=np.uint32)


def masked(crc: np.ndarray) -> np.ndarray:
    crc = np.asarray(crc, dtype=np.uint32)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)).astype(np.uint32)


def tf_records(datas) -> bytes:
    """TFRecords of the bytes objects in `datas`, each: length, masked CRC-32C of the length, data, masked CRC-32C
    of the data (`masked`'s values, on Python ints: a few microseconds less per record than numpy's)."""
    out = []
    value, pack = google_crc32c.value, struct.pack
    for data in datas:
        header = pack("<Q", len(data))
        a, b = value(header), value(data)
        out += [header, pack("<I", (((a >> 15) | (a << 17)) + _MASK_DELTA) & 0xFFFFFFFF), data,
                pack("<I", (((b >> 15) | (b << 17)) + _MASK_DELTA) & 0xFFFFFFFF)]
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class Damage:
    """A damaged stretch of an event file: where it starts (byte offset), how long it is, and what is wrong."""

    offset: int
    length: int
    reason: str


def read_records(path: str) -> Tuple[List[Tuple[int, bytes]], List[Damage]]:
    """The intact records of the file at `path` as ``(byte offset, data)`` in order, and the damaged stretches.

    Example:
        >>> records, damage = read_records("events.out.tfevents.1700000000.host")  # doctest: +SKIP
    """
    records, damage, _ = read_records_from(path, 0)
    return records, damage


def read_records_from(path: str, start: int) -> Tuple[List[Tuple[int, bytes]], List[Damage], int]:
    """:func:`read_records` from byte `start` on; also returns where the last complete record ends (where to
    read on from once the file has grown)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    records, damage, end = _parse(data)
    shift = lambda d: Damage(d.offset + start, d.length, d.reason)  # noqa: E731
    return [(o + start, r) for o, r in records], [shift(d) for d in damage], end + start


def _parse(data: bytes) -> tuple:
    size = len(data)
    frames, damage = [], []
    offset = 0
    while offset + _HEADER <= size:
        header = _frames_at(data, [offset])
        if not header:
            resumed = _resync(data, offset + 1)
            if resumed is None:
                if not _tail_is_a_write_under_way(data, offset):
                    damage.append(Damage(offset, size - offset, "a record header fails its checksum"))
                    offset = size
                break
            damage.append(Damage(offset, resumed - offset, "a record header fails its checksum"))
            offset = resumed
            continue
        (length,) = header
        end = offset + _HEADER + length + _FOOTER
        if end > size:  # cut short: the writer is still writing it, or the file was truncated
            break
        frames.append((offset, length))
        offset = end
    end = offset
    if not frames:
        return [], damage, end
    starts = np.array([o + _HEADER for o, _ in frames], dtype=np.int64)
    lengths = np.array([n for _, n in frames], dtype=np.int64)
    expected = np.array([struct.unpack_from("<I", data, s + n)[0] for s, n in zip(starts, lengths)], dtype=np.uint32)
    good = masked(crc32c_many(data, starts, lengths)) == expected
    records = []
    for (frame_offset, length), ok, start in zip(frames, good, starts):
        if ok:
            records.append((frame_offset, data[start:start + length]))
        else:
            damage.append(Damage(frame_offset, _HEADER + length + _FOOTER, "a record's data fails its checksum"))
    return records, sorted(damage, key=lambda d: d.offset), end


def _frames_at(data: bytes, offsets) -> list:
    """The lengths at `offsets` whose header checksum holds (an empty list for none)."""
    offsets = [o for o in offsets if o + _HEADER <= len(data)]
    if not offsets:
        return []
    crcs = masked(crc32c_many(data, np.array(offsets), np.full(len(offsets), 8)))
    lengths = []
    for offset, crc in zip(offsets, crcs):
        length, stored = struct.unpack_from("<QI", data, offset)
        if stored == int(crc):
            lengths.append(length)
    return lengths


def _resync(data: bytes, start: int):
    """The first offset at or after `start` whose header checksum holds, or None."""
    window = 1 << 16
    for begin in range(start, len(data) - _HEADER + 1, window):
        offsets = np.arange(begin, min(begin + window, len(data) - _HEADER + 1))
        crcs = masked(crc32c_many(data, offsets, np.full(offsets.size, 8)))
        stored = np.array([struct.unpack_from("<I", data, o + 8)[0] for o in offsets], dtype=np.uint32)
        hits = np.flatnonzero(crcs == stored)
        if hits.size:
            return int(offsets[hits[0]])
    return None


def _tail_is_a_write_under_way(data: bytes, offset: int) -> bool:
    """A header shorter than 12 bytes at the end of the file is a write under way, not damage."""
    return len(data) - offset < _HEADER
