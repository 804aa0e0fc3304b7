"""One writer per run directory: a lock file naming the writing process, and a sibling run for a second writer.

Two trainings writing one run directory at the same time interleave their steps, and every loader then shows
one writer's value per step and hides the other's. So a writer claims its run directory with a lock file
(``.tb_xai_writer.lock``: pid, host, the process's start time) created atomically. A second writer that finds
a live lock writes a sibling run instead (``xai_2``, ``xai_3``, ... next to ``xai``: the first one neither
locked nor holding event files) and warns naming it, so both runs are kept and listed.

A lock left by a writer that died (same host, and its pid is gone or belongs to a newer process) is stale and
taken over. A lock written on another host cannot be checked from here and counts as live; the warning names
the file to delete if that writer is known to be gone.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import socket
import threading
import time
from typing import Optional

LOCK_NAME = ".tb_xai_writer.lock"
# Siblings tried before giving up (a directory this crowded is a mistake worth an error).
MAX_SIBLINGS = 1000

logger = logging.getLogger(__name__)

_held: set = set()  # lock paths this process holds (a second writer in one process is a second writer too)
_held_lock = threading.Lock()


def _process_start(pid: int) -> Optional[str]:
    """The kernel's start time of `pid` (Linux), telling a reused pid from the process that wrote a lock."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat: starttime, counted after the ')' ending the name
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "since": time.time()}


def _alive(owner: dict) -> bool:
    """Whether the writer named by a lock file may still be writing."""
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


class RunLock:
    """A claimed run directory; :meth:`release` gives it back (also when the lock file was removed meanwhile)."""

    def __init__(self, run_dir: str, path: str):
        self.run_dir = run_dir
        self.path = path

    def release(self) -> None:
        with _held_lock:
            if self.path not in _held:
                return
            _held.discard(self.path)
        try:
            if _read(self.path).get("pid") == os.getpid():
                os.remove(self.path)
        except OSError:
            pass


def _read(path: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_claim(run_dir: str) -> Optional[RunLock]:
    """The lock of `run_dir` if no live writer holds it (a stale lock is taken over), else None."""
    path = os.path.join(run_dir, LOCK_NAME)
    os.makedirs(run_dir, exist_ok=True)
    for _ in range(2):  # once more after removing a stale lock
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            with _held_lock:
                if path in _held:
                    return None
            owner = _read(path)
            if not owner and time.time() - _mtime(path) < 5.0:
                return None  # being written right now by the writer that created it
            if _alive(owner):
                return None
            logger.warning("tb_xai: %s was left by a writer that is gone (%s); taking it over", path,
                           _describe(owner))
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_owner(), f)
        with _held_lock:
            _held.add(path)
        return RunLock(run_dir, path)
    return None


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _describe(owner: dict) -> str:
    if not owner:
        return "an unreadable lock"
    return f"pid {owner.get('pid')} on {owner.get('host')!r}"


def claim(run_dir: str) -> RunLock:
    """Claims `run_dir` for this writer, or the first free sibling when a live writer holds it (and warns).

    Args:
        run_dir: the run directory asked for.

    Returns:
        The lock; its ``run_dir`` is where this writer writes.

    Raises:
        RuntimeError: every one of `MAX_SIBLINGS` siblings is taken.
    """
    run_dir = os.path.normpath(os.fspath(run_dir))
    lock = _try_claim(run_dir)
    if lock is not None:
        return lock
    holder = _describe(_read(os.path.join(run_dir, LOCK_NAME)))
    for n in range(2, MAX_SIBLINGS + 2):
        sibling = f"{run_dir}_{n}"
        if glob.glob(os.path.join(sibling, "*tfevents*")):
            continue  # another run's history: never mixed with this one
        lock = _try_claim(sibling)
        if lock is not None:
            logger.warning(
                "tb_xai: %s is being written by another training (%s); this one writes to %s instead, so both "
                "are kept (tb_xai.load(log_dir, subdir=%r)). If that writer is gone, delete %s.",
                run_dir, holder, sibling, os.path.basename(sibling), os.path.join(run_dir, LOCK_NAME))
            return lock
    raise RuntimeError(f"tb_xai: {run_dir} and its {MAX_SIBLINGS} siblings are all being written; give this run "
                       "its own log_dir")
