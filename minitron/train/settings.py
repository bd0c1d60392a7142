"""What a run computes, as flat ``dotted.key -> value`` settings, and how two runs differ.

A run directory remembers the settings it was started with (in every step checkpoint's
``trainer.json`` and in its final models' manifests). A rerun resumes -- or, when the
run is finished, reports "nothing to do" -- only with the same settings; otherwise the
differing keys are named. Layout, intervals, logging and ``out`` are not settings: a
run may resume on another layout or from a moved directory.

Paths are compared by what they name, not how they are written: a minitron checkpoint
by the checksums in its manifest, a prepared data directory by its datasets' contents,
anything inside the run directory relative to it, and any other existing path
resolved -- so ``d``, ``./d``, ``/abs/d`` and a moved run directory are one run, and a
checkpoint rewritten in place is not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

# TrainingBase fields that do not change what a run computes (dtype does)
_LAYOUT = {
    "tp",
    "pp",
    "sequence_parallel",
    "recompute",
    "recompute_num_layers",
    "use_distributed_optimizer",
    "grad_reduce_in_fp32",
    "overlap_grad_reduce",
    "max_skipped_steps",
    "dp",
    "gpu_memory_gb",
    "flops_per_second",
    "dry_run",
    "tensorboard",
    "progress",
    "overwrite",
}
_SCHEDULE_ONLY = ("log_every", "eval_every", "save_every", "keep_last")


def of(cfg) -> dict[str, Any]:
    """The settings of a training config (correct, distill or align)."""
    d = dataclasses.asdict(cfg)
    root = Path(cfg.out).resolve() if getattr(cfg, "out", None) else None
    for k in _LAYOUT | {"out", "validation"}:
        d.pop(k, None)
    for k in _SCHEDULE_ONLY:
        d.get("schedule", {}).pop(k, None)
    for k in ("students", "names"):  # distill: absent for one student, as before they existed
        if not d.get(k, True):
            d.pop(k)
    return {k: _normalise(v, root) for k, v in _flatten(d).items()}


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def differences(saved: Optional[dict], now: dict) -> list[str]:
    """``key: saved -> now`` for every differing key (empty: the same run)."""
    if saved is None:
        return []
    keys = sorted(set(saved) | set(now))
    return [
        f"{k}: {_show(saved.get(k))} -> {_show(now.get(k))}"
        for k in keys
        if saved.get(k) != now.get(k)
    ]


def _show(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 80 else s[:77] + "..."


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _normalise(v: Any, root: Optional[Path]) -> Any:
    if isinstance(v, (list, tuple)):
        return [_normalise(x, root) for x in v]
    if not isinstance(v, str) or not v or ":" in v.split("/")[0]:
        return v  # not a path (builtin:..., hub ids that do not exist locally stay as given)
    p = Path(v)
    if not p.exists() and not Path(v + ".bin").is_file():  # a dataset prefix counts too
        return v
    p = p.resolve()
    ident = _content_id(p)
    if ident is not None:
        return ident
    if root is not None and (p == root or root in p.parents):
        return "<out>/" + str(p.relative_to(root))
    return str(p)


def _content_id(p: Path) -> Optional[str]:
    """A checkpoint or prepared-data directory, named by its content."""
    for name, kind, key in (
        ("manifest.json", "checkpoint", "files"),
        ("datasets.json", "data", "datasets"),
    ):
        f = p / name
        if f.is_file():
            try:
                table = json.loads(f.read_text())[key]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if kind == "data":  # the tokens, not where their source file was
                table = [
                    {k: e.get(k) for k in ("name", "content", "tokenizer", "tokens", "documents")}
                    for e in table
                ]
            return (
                f"{kind}:"
                + hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]
            )
    return None
