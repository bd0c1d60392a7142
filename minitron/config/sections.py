"""Sections of the ``minitron run`` config made from the stage configs themselves.

A section is a stage's config dataclass (``DistillConfig``, ``ScoreConfig``, ...) less the
fields the run sets itself (the paths between stages, the layout shared by every stage),
plus a few fields of the run's own (``enabled``, a student's ``name``). Every other field,
with its type, default and documentation, is the stage's: a hyperparameter added to a stage
appears in the run's YAML and in docs/configuration.md without being copied.

    DistillSection = section(DistillConfig, owned=RUN_TRAINING | {"teacher": "..."}, ...)
    cfg = stage_config(run_cfg.distill, teacher=..., out=..., tp=run_cfg.tp, ...)

:data:`SECTIONS` records, for every section class, its stage class, the owned fields with
what the run sets them to, and the run's own fields (``tests/unit/test_config.py`` checks the
run tree against the stage configs with it).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class Section:
    stage: type
    owned: dict[str, str]  # stage field -> what the run sets it to
    extra: tuple[str, ...]  # the run's own fields
    defaults: tuple[str, ...] = ()  # stage fields whose default the section replaces


SECTIONS: dict[type, Section] = {}


def section(
    stage: type,
    name: str,
    doc: str,
    owned: dict[str, str],
    extra: tuple = (),
    defaults: dict[str, Any] | None = None,
    validate=None,
) -> type:
    """A dataclass with ``stage``'s fields less ``owned``, then ``extra`` fields, each given as
    ``(name, type, dataclasses.field(...))``. ``defaults`` replaces a stage default where the
    run needs another one to be valid at all (a preference section's algorithm); the
    embedded default's choices live in its YAML, not here. ``validate(self)``, when given,
    checks the section's own fields."""
    unknown = set(owned) - {f.name for f in dataclasses.fields(stage)}
    if unknown:
        raise TypeError(f"{name}: {stage.__name__} has no field(s) {sorted(unknown)}")
    hints = typing.get_type_hints(stage)
    fields = []
    for f in dataclasses.fields(stage):
        if f.name in owned:
            continue
        spec = dataclasses.field(metadata=f.metadata)
        if defaults and f.name in defaults:
            value = defaults[f.name]
            if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
                spec = dataclasses.field(
                    default_factory=lambda v=value: _copy(v), metadata=f.metadata
                )
            else:
                spec = dataclasses.field(default=value, metadata=f.metadata)
        elif f.default is not dataclasses.MISSING:
            spec = dataclasses.field(default=f.default, metadata=f.metadata)
        elif f.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
        fields.append((f.name, hints[f.name], spec))
    fields += [tuple(e) for e in extra]
    namespace = {"__doc__": doc, "__module__": __name__}
    if validate is not None:
        namespace["validate"] = validate
    cls = dataclasses.make_dataclass(name, fields, namespace=namespace)
    globals()[name] = cls  # importable by name (OmegaConf and pickling look it up)
    SECTIONS[cls] = Section(
        stage, dict(owned), tuple(e[0] for e in extra), tuple(sorted(defaults or {}))
    )
    return cls


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


def field(default: Any = dataclasses.MISSING, text: str = "", *, factory: Any = None):
    """A run-own field of a section (same as ``loader.doc``)."""
    from minitron.config.loader import doc

    return doc(default, text, factory=factory)


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
        if not (isinstance(t, type) and dataclasses.is_dataclass(t)):
            continue
        if t in SECTIONS:
            out.append((key, SECTIONS[t]))
        out += sections_in(t, key + ".")
    return out
