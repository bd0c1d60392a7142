"""Sections of the ``minitron run`` config made from the stage configs themselves.

A section is a stage's config dataclass (``DistillConfig``, ``ScoreConfig``, ...) less the
fields the run sets itself (the paths between stages, the layout shared by every stage),
plus a few fields of the run's own (``enabled``, a student's ``name``). Every other field,
with its type, default and documentation, is the stage's: a hyperparameter added to a stage
appears in the run's YAML and in docs/configuration.md without being copied.

    @section(DistillConfig, owned=RUN_TRAINING | {"teacher": "the (corrected) teacher", ...})
    class RunDistillConfig(DistillConfig):  # the base: for type checkers only
        together: bool = doc(True, "...")  # a field of the run's own

    cfg = stage_config(run_cfg.distill, teacher=..., out=..., tp=run_cfg.tp, ...)

:data:`SECTIONS` records, for every section class, its stage class, the owned fields with
what the run sets them to, and the run's own fields (``tests/unit/test_config.py`` checks the
run tree against the stage configs with it).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, TypeVar


@dataclasses.dataclass(frozen=True)
class Section:
    stage: type
    owned: dict[str, str]  # stage field -> what the run sets it to
    extra: tuple[str, ...]  # the run's own fields
    defaults: tuple[str, ...] = ()  # stage fields whose default the section replaces


SECTIONS: dict[type, Section] = {}


T = TypeVar("T")


def section(
    stage: type,
    owned: dict[str, str],
    defaults: dict[str, Any] | None = None,
    placeholders: dict[str, Any] | None = None,
) -> Callable[[type[T]], type[T]]:
    """Class decorator: the decorated class (declared as a subclass of ``stage``, so that a
    type checker sees the stage's fields) becomes a dataclass with ``stage``'s fields less
    ``owned``, then the class's own annotated fields (the run's: ``enabled``, ``name``) and
    its methods. ``defaults`` replaces a stage default where the run needs another one to
    be valid at all (a preference section's algorithm); the embedded default's choices live
    in its YAML, not here. Unless the class defines ``validate``, the section is checked as
    its stage checks its config, with ``placeholders`` (and the stage's defaults) for the
    owned fields, then by the class's ``validate_own`` if any."""

    def wrap(cls: type[T]) -> type[T]:
        name = cls.__name__
        unknown = set(owned) - {f.name for f in dataclasses.fields(stage)}
        if unknown:
            raise TypeError(f"{name}: {stage.__name__} has no field(s) {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        fields: list[tuple[str, Any, Any]] = []
        for f in dataclasses.fields(stage):
            if f.name in owned:
                continue
            spec = dataclasses.field(metadata=f.metadata)
            if defaults and f.name in defaults:
                value = defaults[f.name]
                if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
                    spec = dataclasses.field(
                        default_factory=functools.partial(_copy, value), metadata=f.metadata
                    )
                else:
                    spec = dataclasses.field(default=value, metadata=f.metadata)
            elif f.default is not dataclasses.MISSING:
                spec = dataclasses.field(default=f.default, metadata=f.metadata)
            elif f.default_factory is not dataclasses.MISSING:
                spec = dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
            fields.append((f.name, hints[f.name], spec))
        own = list(cls.__dict__.get("__annotations__", {}))
        for n in own:
            value = cls.__dict__.get(n, dataclasses.MISSING)
            spec = (
                value if isinstance(value, dataclasses.Field) else dataclasses.field(default=value)
            )
            fields = [f for f in fields if f[0] != n] + [(n, hints[n], spec)]
        namespace = {
            k: v
            for k, v in cls.__dict__.items()
            if callable(v) and not k.startswith("__") and k not in own
        }
        namespace.update(__doc__=cls.__doc__, __module__=cls.__module__)
        if "validate" not in namespace:
            namespace["validate"] = _stage_validate(placeholders or {})
        new = dataclasses.make_dataclass(name, fields, namespace=namespace)
        new.__qualname__ = cls.__qualname__
        SECTIONS[new] = Section(stage, dict(owned), tuple(own), tuple(sorted(defaults or {})))
        return typing.cast(type[T], new)

    return wrap


def _stage_validate(placeholders: dict):
    def validate(self):
        check_as_stage(self, placeholders)
        if hasattr(self, "validate_own"):
            self.validate_own()

    return validate


def check_as_stage(sec: Any, placeholders: dict) -> None:
    """Check a section as its stage checks its config: the stage config built with
    ``placeholders`` (else the stage's defaults) for the owned fields, validated."""
    from minitron.config.loader import validate

    info = SECTIONS[type(sec)]
    values = {k: placeholders.get(k, _stage_default(info.stage, k)) for k in info.owned}
    validate(stage_config(sec, **values))


def _stage_default(stage: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(stage) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    assert f.default_factory is not dataclasses.MISSING, f"{stage.__name__}.{name}: no default"
    return f.default_factory()


def _copy(value):
    import copy

    return copy.deepcopy(value)


def stage_config(sec: Any, **owned: Any) -> Any:
    """The stage config of section ``sec``: its stage fields as they are, the owned ones from
    ``owned`` (every owned field must be given; the run's own fields are left out)."""
    info = SECTIONS[type(sec)]
    missing = set(info.owned) - set(owned)
    extra = set(owned) - set(info.owned)
    if missing or extra:
        raise TypeError(
            f"{type(sec).__name__}: owned fields missing {sorted(missing)}, not owned {sorted(extra)}"
        )
    values = {
        f.name: _copy(getattr(sec, f.name))
        for f in dataclasses.fields(info.stage)
        if f.name not in info.owned
    }
    return info.stage(**values, **owned)


def sections_in(schema: type, prefix: str = "") -> list[tuple[str, Section]]:
    """(dotted key, section) of every section inside ``schema`` (lists as ``key[i]``)."""
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        t = hints[f.name]
        args = typing.get_args(t)
        if typing.get_origin(t) is list and args:
            t, key = args[0], f"{prefix}{f.name}[i]"
        else:
            key = f"{prefix}{f.name}"
            inner = [a for a in args if a is not type(None)]
            if type(None) in args and len(inner) == 1:  # Optional[<config>]
                t = inner[0]
        if not (isinstance(t, type) and dataclasses.is_dataclass(t)):
            continue
        if t in SECTIONS:
            out.append((key, SECTIONS[t]))
        out += sections_in(t, key + ".")
    return out
