"""``minitron export``: a minitron checkpoint -> a Hugging Face directory, a TensorRT-LLM
checkpoint or a Megatron-LM / Megatron-Bridge checkpoint.

    minitron export --ckpt ckpt/smollm2 --format hf --out hf/smollm2
    minitron export --ckpt ckpt/smollm2 --format trtllm --tp 2 --out trtllm/smollm2
    minitron export --ckpt ckpt/smollm2 --format megatron --out megatron/smollm2

The checkpoint is loaded at TP=1, PP=1 (megatron-core reshards whatever layout
it was saved from), converted tensor by tensor, shape-checked against the
architecture, and written atomically with a config.json that transformers loads
as the right sizes (head_dim always explicit) and the source's tokenizer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from minitron.checkpoint import atomic
from minitron.checkpoint.hf_io import copy_tokenizer, write_safetensors
from minitron.checkpoint.load import load_model
from minitron.checkpoint.mcore import non_finite, read_manifest, tokenizer_path
from minitron.config.schema import ExportConfig
from minitron.errors import CheckpointError
from minitron.export import trtllm
from minitron.models.arch import ModelArch, hf_config_for
from minitron.models.builder import parse_dtype
from minitron.models.convert import hf_shapes, mcore_to_hf
from minitron.models.weights import full_tensors
from minitron.parallel import runtime

KIND = "export"  # the output marker's kind: --overwrite replaces only an earlier export


def hf_tensors(tensors: dict, arch, dtype) -> dict:
    """Canonical megatron tensors -> HF tensors of ``dtype``, every shape checked."""
    want = hf_shapes(arch)
    out = {}
    for name, t in mcore_to_hf(tensors, arch):
        if tuple(t.shape) != want[name]:
            raise CheckpointError(
                f"{name} has shape {tuple(t.shape)}, the architecture needs "
                f"{want[name]}; refusing to write a model HF would mis-load"
            )
        out[name] = t.to(dtype).contiguous()
    missing = set(want) - set(out)
    if missing:
        raise CheckpointError(f"export would miss {sorted(missing)[:3]}")
    return out


def write_trtllm(tensors: dict, arch, dtype_name: str, tp: int, hf_config: dict, out: Path) -> list:
    from safetensors.torch import save_file

    files = []
    for rank in range(tp):
        save_file(
            trtllm.rank_weights(tensors, arch, tp, rank), str(out / f"rank{rank}.safetensors")
        )
        files.append(f"rank{rank}.safetensors")
    cfg = trtllm.trtllm_config(arch, dtype_name, tp, hf_config)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return files + ["config.json"]


def main(cfg: ExportConfig, log=print) -> Path:
    t0 = time.perf_counter()
    manifest = read_manifest(cfg.ckpt)
    if cfg.format == "trtllm":  # before any weight is read
        trtllm.check_tp(ModelArch.from_dict(manifest["arch"]), cfg.tp)
    dtype_name = manifest["dtype"] if cfg.dtype == "auto" else cfg.dtype
    if cfg.format == "megatron":
        return export_megatron(cfg, manifest, dtype_name, log)
    lay = runtime.init(1, 1)
    model, arch, _ = load_model(cfg.ckpt)
    tensors = hf_tensors(full_tensors(model), arch, parse_dtype(dtype_name))
    bad = non_finite(tensors.items())
    if bad is not None:
        raise CheckpointError(
            f"{cfg.ckpt}: refusing to export {bad}; the checkpoint holds a "
            "diverged model (export an earlier checkpoint)"
        )
    base = json.loads((Path(cfg.ckpt) / "hf_config.json").read_text())
    hf_config = hf_config_for(arch, base)
    hf_config["torch_dtype"] = dtype_name  # transformers 4.x name
    if "dtype" in hf_config:  # transformers 5.x name
        hf_config["dtype"] = dtype_name
    out = Path(cfg.out)
    if lay.is_main:
        tmp = atomic.begin(out, KIND)
        if cfg.format == "hf":
            files = write_safetensors(tensors.items(), tmp)
            (tmp / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True))
        else:
            files = write_trtllm(tensors, arch, dtype_name, cfg.tp, hf_config, tmp)
        copy_tokenizer(tokenizer_path(cfg.ckpt), tmp)
        atomic.commit(tmp, out, cfg.overwrite, KIND)
        log(f"[export] wrote {out} ({', '.join(files)}) in {time.perf_counter() - t0:.1f}s")
    runtime.barrier()
    return out


def export_megatron(cfg: ExportConfig, manifest: dict, dtype_name: str, log=print) -> Path:
    """The checkpoint rebuilt at TP=1, PP=1 with Megatron-LM's vocabulary padding and saved
    by megatron-core as Megatron-LM saves (:mod:`minitron.export.megatron`)."""
    from minitron.checkpoint import mcore
    from minitron.export import megatron
    from minitron.models.builder import build_model
    from minitron.models.megatron_arch import megatron_vocab_rows
    from minitron.parallel import collectives

    t0 = time.perf_counter()
    arch = ModelArch.from_dict(manifest["arch"])
    megatron.check(arch)
    lay = runtime.init(1, 1)
    if lay.is_main:
        mcore.verify_files(cfg.ckpt, manifest)
    rows = arch.replace(padded_vocab_size=megatron_vocab_rows(arch.vocab_size))
    model = build_model(rows, parse_dtype(dtype_name), init_weights=False)
    mcore.load_weights(model, cfg.ckpt)  # megatron-core reads the rows the two paddings share
    mcore.check_finite(model, cfg.ckpt)
    out = Path(cfg.out)
    tmp = atomic.begin(out, KIND) if lay.is_main else None
    tmp = collectives.broadcast_object(tmp)
    files = megatron.save(model, rows, dtype_name, tokenizer_path(cfg.ckpt), Path(tmp), out)
    runtime.barrier()
    if lay.is_main:
        atomic.commit(Path(tmp), out, cfg.overwrite, KIND)
        log(f"[export] wrote {out} ({', '.join(files)}) in {time.perf_counter() - t0:.1f}s")
    runtime.barrier()
    return out
