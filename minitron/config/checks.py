"""Small validation helpers shared by the config schemas: each raises ConfigError naming the field."""

from __future__ import annotations

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


def out_free(out: str, overwrite: bool, field: str = "out"):
    p = Path(out)
    if p.exists() and not overwrite:
        raise ConfigError(field, f"{p} already exists; choose another path or pass overwrite=true")


def layout(cfg):
    positive(cfg.tp, "tp")
    positive(cfg.pp, "pp")
