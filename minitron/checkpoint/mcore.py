"""minitron checkpoints: megatron-core ``dist_checkpointing`` weights plus a manifest.

Layout of a checkpoint directory::

    manifest.json     format, architecture, dtype, the layout it was saved from,
                      versions, extra stage info, and size + sha256 of every file
    weights/          megatron-core dist_checkpointing (torch_dist): global tensors,
                      so the checkpoint loads at any TP/PP layout
    tokenizer/        the source model's tokenizer and generation config
    hf_config.json    the source model's HF config (the template for export)

The directory is written under a temp name and renamed when complete
(:mod:`minitron.checkpoint.atomic`); the manifest is the last file written.
Loading checks the manifest and every file's size (and by default its sha256)
before megatron-core reads a byte, so a truncated or altered checkpoint is
reported, never loaded as garbage.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Optional

import torch

from minitron.checkpoint import atomic
from minitron.checkpoint.hf_io import copy_tokenizer
from minitron.errors import CheckpointError
from minitron.models.arch import ModelArch
from minitron.parallel import collectives, runtime

MANIFEST = "manifest.json"
FORMAT = "minitron-checkpoint"
VERSION = 1
VERIFY_MODES = ("full", "size", "none")
KIND = "checkpoint"  # the output marker's kind (:mod:`minitron.checkpoint.atomic`)


def _versions() -> dict:
    import importlib.metadata as md

    out: dict[str, Optional[str]] = {"torch": torch.__version__}
    for dist in ("megatron-core", "minitron", "transformers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def save_checkpoint(
    model,
    out: str | Path,
    *,
    arch: ModelArch,
    hf_config: dict,
    tokenizer_src: Optional[Path],
    dtype: str,
    overwrite: bool = False,
    extra: Optional[dict[str, Any]] = None,
    check: bool = True,
) -> Path:
    """Save ``model`` (every rank calls this) to ``out`` atomically; returns ``out``.
    ``check=False`` skips the finiteness check, for a caller that has just made it."""
    from minitron.checkpoint.dist_save import dist_save

    out = Path(out)
    lay = runtime.layout()
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out} already exists; pass overwrite=true to replace it")
    problem = atomic.replace_problem(out, KIND) if lay.is_main and overwrite else None
    problem = collectives.broadcast_object(problem)
    if problem:
        raise CheckpointError(problem)
    if check:
        check_finite(model, out)
    tmp = None
    if lay.is_main:
        tmp = atomic.begin(out, KIND)
        (tmp / "weights").mkdir()
    tmp = collectives.broadcast_object(tmp)
    dist_save(model.sharded_state_dict(), str(tmp / "weights"))
    runtime.barrier()
    if lay.is_main:
        if tokenizer_src is not None:
            (tmp / "tokenizer").mkdir()
            copy_tokenizer(Path(tokenizer_src), tmp / "tokenizer")
        (tmp / "hf_config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True))
        from minitron.models.builder import spec_kind

        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "arch": arch.to_dict(),
            "dtype": dtype,
            "saved_layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "spec": spec_kind()},
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
            "extra": extra or {},
            "files": atomic.checksums(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        atomic.commit(tmp, out, overwrite, KIND)
    runtime.barrier()
    return out


def non_finite(named_tensors) -> Optional[str]:
    """The first tensor holding NaN or inf, as ``name (n of m values)``; None if all finite."""
    for name, t in named_tensors:
        if t is None or not t.is_floating_point():
            continue
        # a finite sum means every value is finite (NaN and inf propagate); only a
        # non-finite sum (or an overflow) pays for the element-wise check
        if bool(torch.isfinite(t.detach().sum())):
            continue
        ok = torch.isfinite(t)
        if not bool(ok.all()):
            return f"{name} ({int((~ok).sum())} of {t.numel()} values are NaN or inf)"
    return None


def check_finite(model, out: str | Path) -> None:
    """Collective: refuse to save a model with a non-finite weight on any rank."""
    bad = collectives.first_error(non_finite(model.named_parameters()))
    if bad is not None:
        raise CheckpointError(
            f"refusing to write {out}: {bad}; training diverged (lower the "
            "learning rate, or resume from an earlier checkpoint)"
        )


def read_manifest(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint directory")
    mf = p / MANIFEST
    if not mf.is_file():
        left = atomic.leftovers(p)
        hint = f" (an unfinished write was left at {left[-1]})" if left else ""
        raise CheckpointError(
            f"{p}: no {MANIFEST}; not a minitron checkpoint, or its write did not finish{hint}"
        )
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{mf} is corrupted ({e})") from None
    if m.get("format") != FORMAT:
        raise CheckpointError(f"{mf}: format {m.get('format')!r} is not {FORMAT!r}")
    if m.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{mf}: version {m['version']} is newer than this minitron "
            f"reads ({VERSION}); upgrade minitron"
        )
    for key in ("arch", "files", "dtype"):
        if key not in m:
            raise CheckpointError(f"{mf}: missing {key!r}")
    return m


def verify_files(path: str | Path, manifest: dict, mode: str = "full") -> None:
    """Check every file the manifest lists: present, same size, and (``full``) same sha256."""
    if mode not in VERIFY_MODES:
        raise CheckpointError(f"verify={mode!r}: valid are {', '.join(VERIFY_MODES)}")
    if mode == "none":
        return
    problem = atomic.verify(Path(path), manifest["files"], full=mode == "full")
    if problem:
        raise CheckpointError(f"{path}: {problem}; the checkpoint is incomplete or corrupted")


def load_weights(model, path: str | Path) -> None:
    """Fill a built model from ``path/weights`` (any saved layout -> this layout)."""
    from megatron.core.dist_checkpointing.validation import StrictHandling
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    from minitron.checkpoint.gate import dist_load

    try:
        state, _, absent = dist_load(
            model.sharded_state_dict(), Path(path) / "weights", strict=StrictHandling.RETURN_ALL
        )
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = lines[-1][:400] if lines else type(e).__name__  # torch nests the cause last
        raise CheckpointError(f"{path}: the weights do not fit this model ({reason})") from None
    absent = sorted(k for k in absent if "_extra_state" not in k)
    if absent:
        raise CheckpointError(
            f"{path}: the checkpoint lacks {len(absent)} tensors this model "
            f"needs, e.g. {absent[:3]}"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if "_extra_state" not in k]
    if missing:
        raise CheckpointError(f"{path}: tensors not loaded: {missing[:3]}")


def load_checkpoint(
    path: str | Path,
    *,
    dtype: Optional[str] = None,
    impl: str = "auto",
    verify: str = "full",
    execution=None,
):
    """Build this rank's model for the checkpoint's architecture and load it.

    Call after ``runtime.init(tp, pp)``; any TP/PP that divides the model works.
    Returns ``(model, manifest)``.
    """
    from minitron.models.builder import Execution, build_model, parse_dtype

    manifest = read_manifest(path)
    err = None
    if runtime.layout().is_main:
        try:
            verify_files(path, manifest, verify)
        except CheckpointError as e:
            err = str(e)
    err = collectives.broadcast_object(err)
    if err:
        raise CheckpointError(err)
    arch = ModelArch.from_dict(manifest["arch"])
    model = build_model(
        arch,
        parse_dtype(dtype or manifest["dtype"]),
        impl,
        init_weights=False,
        execution=execution or Execution(),
    )
    load_weights(model, path)
    return model, manifest


def tokenizer_path(path: str | Path) -> Path:
    return Path(path) / "tokenizer"
