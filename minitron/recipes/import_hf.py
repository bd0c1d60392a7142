"""``minitron import``: a Hugging Face, Megatron-LM, Megatron-Bridge or NeMo 2 checkpoint ->
a minitron (megatron-core) checkpoint.

    minitron import --hf smollm2-135m --out ckpt/smollm2
    torchrun --nproc_per_node 4 -m minitron import --hf DIR --out DIR --tp 2 --pp 2
    minitron import --megatron megatron/llama --tokenizer meta-llama/Llama-3.1-8B --out ckpt/llama

Each rank reads only the HF tensors of its pipeline stage and keeps its
tensor-parallel shard; the saved checkpoint holds global tensors and loads at
any layout. A Megatron-family source is read by megatron-core straight into this
layout (:mod:`minitron.checkpoint.megatron`): model tensors only, every pickle gated.
"""

from __future__ import annotations

import time
from pathlib import Path

from minitron.checkpoint.hf_io import HFReader
from minitron.checkpoint.mcore import save_checkpoint
from minitron.config.schema import ImportConfig
from minitron.models.arch import arch_from_hf_config, read_hf_config
from minitron.models.builder import build_model, check_layout, parse_dtype
from minitron.models.params import count_params, human
from minitron.models.sources import resolve_model
from minitron.models.weights import load_hf_weights
from minitron.parallel import runtime


def main(cfg: ImportConfig, log=print) -> Path:
    from minitron.config.schema import is_megatron_source

    if cfg.megatron or is_megatron_source(cfg.hf):
        return import_megatron(cfg, log)
    t0 = time.perf_counter()
    runtime.check_world(cfg.tp, cfg.pp)
    src = runtime.on_main(resolve_model, cfg.hf)
    hf_config = read_hf_config(src)
    arch = arch_from_hf_config(hf_config, cfg.vocab_pad_multiple)
    check_layout(arch, cfg.tp, cfg.pp)
    lay = runtime.init(cfg.tp, cfg.pp)
    if lay.is_main:
        n = count_params(arch)["total"]
        log(f"[import] {src}: {arch.family}, {human(n)} parameters, tp={lay.tp} pp={lay.pp}")
    model = build_model(arch, parse_dtype(cfg.dtype), cfg.transformer_impl, init_weights=False)
    load_hf_weights(model, HFReader(src), arch)
    out = save_checkpoint(
        model,
        cfg.out,
        arch=arch,
        hf_config=hf_config,
        tokenizer_src=src,
        dtype=cfg.dtype,
        overwrite=cfg.overwrite,
        extra={"source": str(cfg.hf), "stage": "import"},
    )
    if lay.is_main:
        log(f"[import] wrote {out} in {time.perf_counter() - t0:.1f}s")
    return out


def import_megatron(cfg: ImportConfig, log=print) -> Path:
    from minitron.checkpoint import megatron

    t0 = time.perf_counter()
    runtime.check_world(cfg.tp, cfg.pp)
    source = megatron.open_source(cfg.megatron or cfg.hf)
    field = "megatron" if cfg.megatron else "hf"
    arch, hf_config, tok_dir = megatron.describe(
        source, cfg.tokenizer or None, cfg.dtype, cfg.vocab_pad_multiple
    )
    check_layout(arch, cfg.tp, cfg.pp)
    lay = runtime.init(cfg.tp, cfg.pp)
    if lay.is_main:
        n = count_params(arch)["total"]
        log(
            f"[import] {source.weights} ({source.kind}): {human(n)} parameters, tp={lay.tp} "
            f"pp={lay.pp}"
        )
    model = build_model(arch, parse_dtype(cfg.dtype), cfg.transformer_impl, init_weights=False)
    megatron.load_weights(model, source)
    out = save_checkpoint(
        model,
        cfg.out,
        arch=arch,
        hf_config=hf_config,
        tokenizer_src=tok_dir,
        dtype=cfg.dtype,
        overwrite=cfg.overwrite,
        extra={"source": str(getattr(cfg, field)), "source_kind": source.kind, "stage": "import"},
    )
    if lay.is_main:
        log(f"[import] wrote {out} in {time.perf_counter() - t0:.1f}s")
    return out
