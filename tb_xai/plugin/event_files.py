"""The plugin's check of a run's event files for damage TensorBoard's loaders pass over.

TensorBoard's Python loader (``--load_fast=false``) stops reading a file at its first record that fails its
checksum, so every later step disappears without a word; the Rust loader reads on. The plugin checks the
event files of each local run record by record (`tb_xai.event_records`, incrementally: only what was
appended since the last check is read), reports every damaged stretch in the ``runs`` answer and in one log
warning, and, where TensorBoard's loader stops at the damage, serves that run from the files itself (through
`tb_xai.reader.read_run`, the run model `tb_xai.load` uses), so every readable step is kept.
"""

from __future__ import annotations

import bisect
import dataclasses
import glob
import logging
import os
import threading
import warnings
from typing import Dict, List, Optional

from tensorboard.compat.proto import event_pb2

from tb_xai import event_records, reader, runmodel

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _FileState:
    size: int
    mtime: float
    end: int  # where the last complete record ends: the next check reads on from here
    damage: list  # of (Damage, step before it or None)
    last_step: Optional[int]


@dataclasses.dataclass(frozen=True)
class DataLoss:
    """A damaged stretch of one event file of a run: the file, where, how long, the step before it, why."""

    file: str
    offset: int
    length: int
    after_step: Optional[int]
    reason: str

    def to_json(self) -> dict:
        return {"file": os.path.basename(self.file), "offset": self.offset, "bytes": self.length,
                "after_step": self.after_step, "reason": self.reason}


class EventFileCheck:
    """Checks the event files of the runs under a local `logdir`; `serve_from_files` when the loader stops at damage."""

    def __init__(self, logdir: Optional[str], serve_from_files: bool):
        local = bool(logdir) and "://" not in logdir and os.path.isdir(logdir)
        self._logdir = logdir if local else None
        self._serve_from_files = serve_from_files
        self._files: Dict[str, _FileState] = {}
        self._file_runs: Dict[str, tuple] = {}
        self._warned: set = set()
        self._lock = threading.Lock()

    def patch(self, runs: Dict[str, runmodel.Run]) -> Dict[str, runmodel.Run]:
        """`runs` with each run's data loss recorded; damaged runs read from their files when needed."""
        if self._logdir is None:
            return runs
        patched = {}
        for name, run in runs.items():
            run_dir = os.path.join(self._logdir, *name.split("/")) if name != "." else self._logdir
            loss = self.check(run_dir)
            if loss and self._serve_from_files:
                run = self._file_run(name, run_dir)
            patched[name] = dataclasses.replace(run, data_loss=tuple(loss)) if loss else run
        return patched

    def check(self, run_dir: str) -> List[DataLoss]:
        """Every damaged stretch of the event files in `run_dir`, warned about once each."""
        losses = []
        for path in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))):
            for damage, step in self._check_file(path):
                loss = DataLoss(path, damage.offset, damage.length, step, damage.reason)
                losses.append(loss)
                with self._lock:
                    fresh = loss not in self._warned
                    self._warned.add(loss)
                if fresh:
                    where = "before the first step" if step is None else f"after step {step}"
                    logger.warning("tb_xai: %s: %d bytes at offset %d (%s) are lost: %s", path, damage.length,
                                   damage.offset, where, damage.reason)
        return losses

    def _check_file(self, path: str) -> list:
        try:
            stat = os.stat(path)
        except OSError:
            return []
        with self._lock:
            state = self._files.get(path)
        if state is not None and (state.size, state.mtime) == (stat.st_size, stat.st_mtime):
            return state.damage
        if state is None or stat.st_size < state.end:  # new, or rewritten shorter: from the start
            state = _FileState(0, 0.0, 0, [], None)
        records, damage, end = event_records.read_records_from(path, state.end)
        offsets = [offset for offset, _ in records]
        found = list(state.damage)
        for item in damage:
            before = bisect.bisect_left(offsets, item.offset) - 1
            found.append((item, _step(records[before][1]) if before >= 0 else state.last_step))
        last_step = _step(records[-1][1]) if records else state.last_step
        state = _FileState(stat.st_size, stat.st_mtime, end, found, last_step)
        with self._lock:
            self._files[path] = state
        return found

    def _file_run(self, name: str, run_dir: str) -> runmodel.Run:
        signature = tuple((p, os.path.getsize(p)) for p in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))))
        with self._lock:
            known = self._file_runs.get(name)
        if known is not None and known[0] == signature:
            return known[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported once above, through the log
            run = reader.read_run(run_dir, name=name)
        with self._lock:
            self._file_runs[name] = (signature, run)
        return run


def _step(record: bytes) -> Optional[int]:
    try:
        return int(event_pb2.Event.FromString(record).step)
    except Exception:  # noqa: BLE001 - a record that passed its checksum but does not parse names no step
        return None
