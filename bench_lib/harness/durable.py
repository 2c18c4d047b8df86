"""Durable file writes for the journal and the run file: whole lines, atomic replaces, fsynced folders.

A journal line is appended whole or not at all (a write that fails, say with ENOSPC, is cut back), a torn
last line left by a power loss is dropped before the next append, and a created or renamed file has its
folder fsynced so the name survives a crash too.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path
from typing import Any


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(folder: Path) -> None:
    """Make a file's creation or rename durable: fsync its folder (a no-op where the OS cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _torn_tail(fd: int) -> tuple[int, int]:
    """(bytes to keep, bytes torn) of an open journal: a last line without its newline is torn, unless it is a
    whole record that only lacks the newline (then nothing is torn and the newline is owed)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size, 0
    text = os.pread(fd, size, 0)
    keep = text.rfind(b"\n") + 1
    try:
        if isinstance(json.loads(text[keep:]), dict):
            return size, 0
    except ValueError:
        pass
    return keep, size - keep


def repair_tail(path: Path) -> str | None:
    """Drop a torn last line (power loss, kill mid-write) so the next record starts on a fresh line.

    Returns a note saying what was dropped, or None when the journal ended cleanly.
    """
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        keep, torn = _torn_tail(fd)
        if torn:
            os.ftruncate(fd, keep)
            os.fsync(fd)
            return f"{path}: dropped a torn last line ({torn} bytes, the run stopped while writing it)"
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a whole last record, its newline not written
            os.lseek(fd, 0, os.SEEK_END)
            _write_all(fd, b"\n")
            os.fsync(fd)
        return None
    finally:
        os.close(fd)


def append_line(path: Path, obj: dict[str, Any]) -> None:
    """Append one record as one whole line; on failure (ENOSPC) cut the file back to where it was."""
    data = (json.dumps(obj, allow_nan=True, default=str) + "\n").encode()
    created = not path.exists()
    note = None if created else repair_tail(path)
    if note:
        warnings.warn(note, stacklevel=3)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # a line is whole or absent, never torn by a full disk
            raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` durably so a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
