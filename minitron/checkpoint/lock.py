"""One writer per output directory: an OS file lock beside it.

``<parent>/.<name>.lock`` is locked with ``flock`` (exclusive, non-blocking) for as long
as the command runs; the OS releases it when the process ends, however it ends
(``kill -9`` included), so a stale lock never blocks a rerun. The file holds the
holder's pid, host and command line, which a refused second writer reports. Only global
rank 0 of a distributed launch takes the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Optional

from minitron.errors import MinitronError


class Locked(MinitronError):
    """Another process is writing the same output directory."""


def lock_path(out: Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


class DirLock:
    """Hold ``lock_path(out)`` until :meth:`release` (or the process ends)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.fd: Optional[int] = None

    def acquire(self) -> DirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise Locked(
                    f"{self.out} is being written by another process ({holder}); wait "
                    "for it to finish or stop it, or choose another output "
                    "directory"
                ) from None
            # the file may have been removed by a holder releasing it between our open and
            # lock: then this lock guards nothing, so try again on the new file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
            ).encode(),
        )
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
