"""YAML + ``key=value`` overrides -> a validated stage config dataclass.

OmegaConf (not Hydra): it merges a YAML file and dotted overrides onto a dataclass
schema with type checks and unknown-key errors, and nothing else. Hydra adds a
working-directory change, its own logging and launcher plugins that fight
``torchrun``; we need none of it. See docs/configuration.md.

Every config class documents each field with ``doc(...)`` metadata and may
define ``validate(self)``, which raises :class:`ConfigError` naming the field;
:func:`validate` walks nested configs and prefixes the dotted path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from minitron.errors import ConfigError

T = TypeVar("T")
REQUIRED = "???"  # OmegaConf's marker for a value the user must give


def doc(default: Any = dataclasses.MISSING, text: str = "", *, factory: Any = None):
    """A dataclass field with its documentation (shown by ``minitron <cmd> --help-config``)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"doc": text})
    return dataclasses.field(default=default, metadata={"doc": text})


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _nested(cls) -> dict[str, type]:
    """Field name -> dataclass type, for the fields of ``cls`` that are configs themselves."""
    hints = typing.get_type_hints(cls)
    return {n: t for n, t in hints.items() if isinstance(t, type) and dataclasses.is_dataclass(t)}


def _omegaconf_error(e: Exception, schema) -> ConfigError:
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        MissingMandatoryValue,
        ValidationError,
    )

    key = getattr(e, "full_key", None) or "config"
    msg = str(e).splitlines()[0]
    if isinstance(e, (ConfigKeyError, ConfigAttributeError)):
        parent = schema
        for p in key.split(".")[:-1]:
            if p.isdigit():  # students.0.name: the list's item, already taken
                continue
            name = p.split("[")[0]
            t = typing.get_type_hints(parent).get(name) if parent is not None else None
            parent = _list_item(t) or optional_item(t) or _nested(parent).get(name)
            if parent is None:
                break
        valid = ", ".join(_field_names(parent)) if parent is not None else ""
        return ConfigError(key, f"unknown key; valid keys here: {valid}")
    if isinstance(e, MissingMandatoryValue):
        return ConfigError(key, "is required; set it in the YAML file or as key=value")
    if isinstance(e, ValidationError):
        return ConfigError(key, f"invalid value ({msg})")
    return ConfigError(key, msg)


def validate(cfg: Any, prefix: str = "") -> Any:
    """Run ``validate()`` on ``cfg`` and its nested configs; errors carry the dotted path."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, str) and v == REQUIRED:
            raise ConfigError(
                prefix + f.name, "is required; set it in the YAML file or as key=value"
            )
        if dataclasses.is_dataclass(v):
            validate(v, f"{prefix}{f.name}.")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if dataclasses.is_dataclass(item):
                    validate(item, f"{prefix}{f.name}[{i}].")
    if hasattr(cfg, "validate"):
        try:
            cfg.validate()
        except ConfigError as e:
            if prefix and not e.field.startswith(prefix):
                raise ConfigError(prefix + e.field, e.message) from None
            raise
    return cfg


def parse_overrides(args: Sequence[str]) -> list[str]:
    bad = [a for a in args if "=" not in a or a.startswith("=")]
    if bad:
        raise ConfigError(bad[0], "is not an override; write key=value (e.g. tp=2)")
    return list(args)


def load(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: dict | None = None,
) -> T:
    """Build ``schema`` from defaults <- YAML file <- ``values`` <- ``key=value`` overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.structured(schema)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError("--config", f"{p} does not exist")
            try:
                y = OmegaConf.load(p)
            except Exception as e:
                raise ConfigError("--config", f"{p} is not valid YAML ({e})") from None
            cfg = OmegaConf.merge(cfg, y)
        if values:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(values))
        for item in parse_overrides(overrides):
            key, raw = item.split("=", 1)
            if "[" in key or any(p.isdigit() for p in key.split(".")):
                # a key into a list item: students[0].search.steps=20 (a merge cannot)
                value = OmegaConf.from_dotlist([f"v={raw}"])["v"]
                OmegaConf.update(cfg, key.strip(), value, merge=True)
            else:  # a merge also creates an unset optional section (data.paths=[...])
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _omegaconf_error(e, schema) from None
    return validate(obj)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _default(f: dataclasses.Field, instance: Any = None) -> Any:
    """A field's default: from ``instance`` (the parent's default of this nested config, which
    may differ from the class defaults) when given, else the field's own; MISSING if none."""
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _list_item(t) -> Any:
    """The dataclass of a ``List[<dataclass>]`` annotation, else None."""
    args = typing.get_args(t)
    if typing.get_origin(t) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def optional_item(t) -> Any:
    """The dataclass of an ``Optional[<dataclass>]`` annotation, else None."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0] if dataclasses.is_dataclass(args[0]) else None
    return None


def describe(
    schema: type, prefix: str = "", instance: Any = None
) -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every field, nested configs flattened (with the defaults
    their parent gives them), and the fields of a list's items as ``key[i].field``."""
    rows = []
    nested = _nested(schema)
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        value = _default(f, instance)
        if f.name in nested:
            sub = value if value is not dataclasses.MISSING and value != REQUIRED else None
            rows += describe(nested[f.name], f"{prefix}{f.name}.", sub)
            continue
        default = "(required)" if value is dataclasses.MISSING or value == REQUIRED else repr(value)
        t = hints[f.name]
        tname = t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")
        item, opt = _list_item(t), optional_item(t)
        if item is not None:
            tname = f"List[{item.__name__}]"
        if opt is not None:
            tname = f"Optional[{opt.__name__}]"
        rows.append((prefix + f.name, tname, default, f.metadata.get("doc", "")))
        if item is not None:
            rows += describe(item, f"{prefix}{f.name}[i].")
        if opt is not None:  # its fields, when it is set
            rows += describe(opt, f"{prefix}{f.name}.")
    return rows
