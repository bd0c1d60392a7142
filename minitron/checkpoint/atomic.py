"""Atomic directory and file writes, the overwrite guard, and file checksums.

A directory is built under ``.<name>.tmp.<pid>.<random>`` beside its destination and
renamed into place only when complete, so a crash never leaves a half-written output
under the real name. Temp names are unique per process (a distributed save picks its
name on rank 0 and broadcasts it). Every output carries a marker file
(:data:`MARKER`) naming its kind; ``overwrite`` replaces only a directory whose marker
names the same kind (a checkpoint's manifest counts as its marker), never another
directory, and never the working directory or one of its parents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

MARKER = ".minitron-output.json"


def _unique() -> str:
    return f"{os.getpid()}.{uuid.uuid4().hex[:8]}"


def temp_dir_for(out: Path) -> Path:
    """A fresh temp name beside ``out``, unique to this call."""
    return out.parent / f".{out.name}.tmp.{_unique()}"


def leftovers(out: Path) -> list[Path]:
    """Temp directories an interrupted write of ``out`` left behind."""
    return sorted(out.parent.glob(f".{out.name}.tmp*"))


def begin(out: Path, kind: Optional[str] = None) -> Path:
    """Create a fresh temp directory for ``out`` (removing those earlier crashes left: the
    caller holds the output's lock, so no other writer owns them). With ``kind``, the temp
    directory gets the output marker."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in leftovers(out):
        shutil.rmtree(old, ignore_errors=True)
    tmp = temp_dir_for(out)
    tmp.mkdir()
    if kind is not None:
        (tmp / MARKER).write_text(json.dumps({"kind": kind}))
    return tmp


def kind_of(path: Path) -> Optional[str]:
    """The kind an existing output's marker names (None: not a minitron output)."""
    try:
        return json.loads((path / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    # outputs written before markers existed: their own metadata says what they are
    for name, fmt, kind in (
        ("manifest.json", "minitron-checkpoint", "checkpoint"),
        ("scores.json", "minitron-scores", "scores"),
    ):
        try:
            if json.loads((path / name).read_text()).get("format") == fmt:
                return kind
        except (OSError, ValueError, AttributeError):
            pass
    return None


def replace_problem(out: Path, kind: str) -> Optional[str]:
    """Why ``overwrite`` may not replace ``out`` with an output of ``kind`` (None: it may)."""
    if not out.exists():
        return None
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents or target == Path.home().resolve():
        return f"{out} is the working directory, one of its parents or home; never replaced"
    if not target.is_dir():
        return f"{out} is a file, not a {kind} output"
    if not any(target.iterdir()):
        return None
    found = kind_of(target)
    if found != kind:
        what = f"a minitron {found} output" if found else "not a minitron output"
        return (
            f"{out} is {what}; overwrite replaces only a {kind} output (or an empty "
            "directory): remove it yourself or choose another path"
        )
    return None


def check_replace(out: Path, kind: str) -> None:
    from minitron.errors import MinitronError

    problem = replace_problem(out, kind)
    if problem:
        raise MinitronError(problem)


def commit(tmp: Path, out: Path, overwrite: bool, kind: Optional[str] = None) -> None:
    """Move a finished temp directory to ``out``; the old ``out`` is removed only after."""
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=true to replace it")
        if kind is not None:
            check_replace(out, kind)
        old = out.parent / f".{out.name}.old.{_unique()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    _fsync_dir(out.parent)


def write_text(path: Path, text: str) -> None:
    """Write a small file atomically (unique temp name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp.{_unique()}"
    tmp.write_text(text)
    os.replace(tmp, path)


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
    return {
        str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": d}
        for p, d in zip(files, digests)
    }


def verify(root: Path, files: dict[str, dict], full: bool = True) -> Optional[str]:
    """What is wrong with the files under ``root`` against a checksum table (None: nothing)."""
    for rel, info in files.items():
        f = root / rel
        if not f.is_file():
            return f"{rel} is missing"
        size = f.stat().st_size
        if size != info["size"]:
            return (
                f"{rel} has {size} bytes, {info['size']} were written; the file is "
                "truncated or was replaced"
            )
        if full and sha256(f) != info["sha256"]:
            return f"{rel} does not match its sha256; the file is corrupted"
    return None


def copy_dir(src: Path, out: Path, kind: str) -> None:
    """Copy the output ``src`` to ``out`` atomically, hard-linking its files where the file
    system allows (outputs are never changed in place: a rewrite is a new file)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    tmp = begin(Path(out))
    shutil.copytree(src, tmp, dirs_exist_ok=True, copy_function=link)
    commit(tmp, Path(out), overwrite=True, kind=kind)
