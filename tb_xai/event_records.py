"""Reads the records of a TFRecord event file, keeping every intact record and reporting the damaged ones.

TensorBoard's own readers stop at the first damaged record (a bad checksum in the middle of a file hides every
step after it). Here each record's length and data checksums are checked; a record whose data is corrupt is
skipped and reported, and a corrupt length header is resynchronized on the next valid header, so every
readable record is kept. A record cut short at the end of the file (a write under way) ends the file quietly.

Record framing: ``uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)``.
Checksums are CRC-32C (Castagnoli), computed with numpy over all records of a file at once: a pure-Python
byte loop would take seconds on a run of tens of megabytes.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import List, Tuple

import numpy as np

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_HEADER = 12  # length (8) + its checksum (4)
_FOOTER = 4
_CHUNK = 256  # bytes per lane of the vectorized checksum


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _table()


def _zeros_operator(nbytes: int) -> np.ndarray:
    """The 32 images of the basis states after feeding `nbytes` zero bytes (the CRC register is linear)."""
    columns = np.array([1 << bit for bit in range(32)], dtype=np.uint32)
    for _ in range(nbytes):
        columns = _TABLE[columns & 0xFF] ^ (columns >> 8)
    return columns


_SHIFT_CHUNK = _zeros_operator(_CHUNK)


def _apply(operator: np.ndarray, states: np.ndarray) -> np.ndarray:
    out = np.zeros_like(states)
    for bit in range(32):
        out ^= np.where((states >> np.uint32(bit)) & np.uint32(1), operator[bit], np.uint32(0))
    return out


def crc32c_many(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of the byte ranges ``buffer[start:start + length]``, all at once.

    Each range is front-padded with zeros to whole chunks; the register starts at 0 (so leading zeros leave it
    unchanged) and the standard all-ones start is folded into the first four data bytes, which is the same
    linear map. Chunks are checksummed side by side, then each range's chunks are combined in order.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    count = starts.size
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    chunks = np.maximum(1, -(-lengths // _CHUNK))
    padded = chunks * _CHUNK
    first_chunk = np.concatenate(([0], np.cumsum(chunks)[:-1]))
    lanes = np.zeros((int(chunks.sum()), _CHUNK), dtype=np.uint8)
    flat = lanes.reshape(-1)
    for i in range(count):
        offset = int(first_chunk[i]) * _CHUNK + int(padded[i] - lengths[i])
        data = buffer[starts[i]:starts[i] + lengths[i]]
        flat[offset:offset + lengths[i]] = data
        head = min(4, int(lengths[i]))
        flat[offset:offset + head] ^= np.uint8(0xFF)
    state = np.zeros(lanes.shape[0], dtype=np.uint32)
    for column in range(_CHUNK):
        state = _TABLE[(state ^ lanes[:, column]) & 0xFF] ^ (state >> 8)
    combined = np.zeros(count, dtype=np.uint32)
    for position in range(int(chunks.max())):
        active = chunks > position
        shifted = _apply(_SHIFT_CHUNK, combined[active])
        combined[active] = shifted ^ state[first_chunk[active] + position]
    short = lengths < 4  # the all-ones start folds into 4 bytes only; shorter ranges take the slow path
    for i in np.flatnonzero(short):
        combined[i] = _crc32c_slow(bytes(buffer[starts[i]:starts[i] + lengths[i]])) ^ 0xFFFFFFFF
    return combined ^ np.uint32(0xFFFFFFFF)


def _crc32c_slow(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = int(_TABLE[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: np.ndarray) -> np.ndarray:
    crc = np.asarray(crc, dtype=np.uint32)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)).astype(np.uint32)


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
    buffer = np.frombuffer(data, dtype=np.uint8)
    size = len(data)
    frames, damage = [], []
    offset = 0
    while offset + _HEADER <= size:
        header = _frames_at(buffer, data, [offset])
        if not header:
            resumed = _resync(buffer, data, offset + 1)
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
    good = masked(crc32c_many(buffer, starts, lengths)) == expected
    records = []
    for (frame_offset, length), ok, start in zip(frames, good, starts):
        if ok:
            records.append((frame_offset, data[start:start + length]))
        else:
            damage.append(Damage(frame_offset, _HEADER + length + _FOOTER, "a record's data fails its checksum"))
    return records, sorted(damage, key=lambda d: d.offset), end


def _frames_at(buffer: np.ndarray, data: bytes, offsets) -> list:
    """The lengths at `offsets` whose header checksum holds (an empty list for none)."""
    offsets = [o for o in offsets if o + _HEADER <= len(data)]
    if not offsets:
        return []
    crcs = masked(crc32c_many(buffer, np.array(offsets), np.full(len(offsets), 8)))
    lengths = []
    for offset, crc in zip(offsets, crcs):
        length, stored = struct.unpack_from("<QI", data, offset)
        if stored == int(crc):
            lengths.append(length)
    return lengths


def _resync(buffer: np.ndarray, data: bytes, start: int):
    """The first offset at or after `start` whose header checksum holds, or None."""
    window = 1 << 16
    for begin in range(start, len(data) - _HEADER + 1, window):
        offsets = np.arange(begin, min(begin + window, len(data) - _HEADER + 1))
        crcs = masked(crc32c_many(buffer, offsets, np.full(offsets.size, 8)))
        stored = np.array([struct.unpack_from("<I", data, o + 8)[0] for o in offsets], dtype=np.uint32)
        hits = np.flatnonzero(crcs == stored)
        if hits.size:
            return int(offsets[hits[0]])
    return None


def _tail_is_a_write_under_way(data: bytes, offset: int) -> bool:
    """A header shorter than 12 bytes at the end of the file is a write under way, not damage."""
    return len(data) - offset < _HEADER
