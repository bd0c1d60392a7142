"""Small validation helpers shared by the config schemas: each raises ConfigError naming the field."""

from __future__ import annotations

import math
from pathlib import Path

from minitron.errors import ConfigError

DTYPE_CHOICES = ("float32", "bfloat16", "float16")
IMPL_CHOICES = ("auto", "local", "transformer_engine")


def choice(value, choices, field):
    if value not in choices:
        raise ConfigError(field, f"{value!r} is not valid; choose one of: {', '.join(choices)}")


def positive(value, field):
    if value is None or value < 1:
        raise ConfigError(field, f"must be >= 1, got {value}")


def number(value, field, *, gt=None, ge=None, lt=None, hint: str = ""):
    """A finite number with ``value > gt``, ``>= ge`` and ``< lt`` (each when given)."""
    ok = value is not None and math.isfinite(value)
    ok = ok and (gt is None or value > gt) and (ge is None or value >= ge)
    ok = ok and (lt is None or value < lt)
    if not ok:
        if gt is not None and lt is not None:
            want = f"in ({gt}, {lt})"
        elif ge is not None and lt is not None:
            want = f"in [{ge}, {lt})"
        else:
            want = f"> {gt}" if gt is not None else f">= {ge}" if ge is not None else f"< {lt}"
        raise ConfigError(field, f"must be {want}, got {value}" + (f" ({hint})" if hint else ""))


def out_free(out: str, overwrite: bool, field: str = "out"):
    p = Path(out)
    if p.exists() and not overwrite:
        raise ConfigError(field, f"{p} already exists; choose another path or pass overwrite=true")


def _file_ancestor(p: Path):
    """The first existing ancestor of ``p`` that is a file (so nothing can be created under it)."""
    for a in p.parents:
        if a.exists():
            return a if not a.is_dir() else None
    return None


def json_out(out, field: str = "out", example: str = "result.json"):
    """A result file that is written at the end (and replaced if it exists): check now, before
    the work, that it can be written: not a directory, and no file where a parent should be."""
    if out is None:
        return
    p = Path(out)
    if p.is_dir():
        raise ConfigError(field, f"{p} is a directory; give a file path, e.g. {p / example}")
    bad = _file_ancestor(p)
    if bad is not None:
        raise ConfigError(field, f"{bad} is a file, so {p} cannot be created; choose another path")


def dir_out(out, field: str = "out"):
    """A directory to write into: not a file, and no file where a parent should be."""
    p = Path(out)
    bad = p if p.exists() and not p.is_dir() else _file_ancestor(p)
    if bad is not None:
        raise ConfigError(field, f"{bad} is a file; give a directory path for {field}")


def layout(cfg):
    positive(cfg.tp, "tp")
    positive(cfg.pp, "pp")
