"""Atomic directory writes and file checksums.

A directory is built under ``.<name>.tmp`` beside its destination and renamed
into place only when complete, so a crash never leaves a half-written
checkpoint under the real name. The temp name is deterministic so every rank of
a distributed save (on shared storage) writes into the same one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def temp_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.tmp"


def begin(out: Path) -> Path:
    """Create a fresh temp directory for ``out`` (removing one a crash left behind)."""
    tmp = temp_dir_for(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move a finished temp directory to ``out``; the old ``out`` is removed only after."""
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=true to replace it")
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    _fsync_dir(out.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256(path: Path, chunk: int = 16 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checksums(root: Path, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """{relative path: {size, sha256}} for every file under ``root``, hashed in parallel."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(sha256, files))
    return {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": d}
            for p, d in zip(files, digests)}
