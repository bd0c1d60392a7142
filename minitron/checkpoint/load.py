"""Load a model for this rank from a minitron checkpoint or a Hugging Face source."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from minitron.checkpoint.hf_io import HFReader
from minitron.checkpoint.mcore import MANIFEST, load_checkpoint
from minitron.errors import ConfigError
from minitron.models.arch import arch_from_hf_config, read_hf_config
from minitron.models.builder import Execution, build_model, parse_dtype
from minitron.models.sources import resolve_model
from minitron.models.weights import load_hf_weights
from minitron.parallel import runtime


def is_checkpoint(spec: str) -> bool:
    return (Path(spec).expanduser() / MANIFEST).is_file()


def is_megatron(spec: str) -> bool:
    """A Megatron-LM, Megatron-Bridge or NeMo 2 checkpoint directory (never a minitron one)."""
    from minitron.formats import is_megatron as found

    return not is_checkpoint(spec) and found(spec)


def load_model(
    spec: str,
    dtype: Optional[str] = None,
    impl: str = "auto",
    verify: str = "full",
    execution: Execution = Execution(),  # noqa: B008 (frozen: never mutated)
):
    """(model, arch, info) for ``spec``: a checkpoint directory, HF directory, Hub id,
    embedded name or Megatron-LM / Megatron-Bridge / NeMo 2 checkpoint (foreign sources are
    converted in memory, straight into this layout). Call after ``runtime.init``."""
    if is_megatron(spec):
        from minitron.checkpoint import megatron

        source = megatron.open_source(spec)
        arch, hf_config, tok_dir = megatron.describe(source)
        model = build_model(
            arch, parse_dtype(dtype or "float32"), impl, init_weights=False, execution=execution
        )
        megatron.load_weights(model, source)
        return (
            model,
            arch,
            {
                "kind": source.kind,
                "path": str(spec),
                "hf_config": hf_config,
                "tokenizer": str(tok_dir),
            },
        )
    if is_checkpoint(spec):
        model, manifest = load_checkpoint(
            spec, dtype=dtype, impl=impl, verify=verify, execution=execution
        )
        return (
            model,
            model.minitron_arch,
            {"kind": "checkpoint", "path": str(spec), "manifest": manifest},
        )
    src = runtime.on_main(resolve_model, spec)
    hf_config = read_hf_config(src)
    arch = arch_from_hf_config(hf_config)
    model = build_model(
        arch, parse_dtype(dtype or "float32"), impl, init_weights=False, execution=execution
    )
    load_hf_weights(model, HFReader(src), arch)
    return model, arch, {"kind": "hf", "path": str(src), "hf_config": hf_config}


def describe_source(spec: str, field: str = "model", tokenizer: Optional[str] = None) -> tuple:
    """(arch, HF config dict, tokenizer directory) of a checkpoint or HF source, without
    loading weights: what a stage needs to validate a target and to save its output.
    Errors name ``field`` (the config key that gave ``spec``). ``tokenizer``: for a Megatron
    checkpoint that carries none."""
    try:
        return _describe(spec, tokenizer)
    except ConfigError as e:
        if e.field == "hf":
            raise ConfigError(field, e.message) from None
        raise


def _describe(spec: str, tokenizer: Optional[str] = None) -> tuple:
    import json

    if is_megatron(spec):
        from minitron.checkpoint import megatron

        return megatron.describe(megatron.open_source(spec), tokenizer)
    if is_checkpoint(spec):
        from minitron.checkpoint.mcore import read_manifest, tokenizer_path
        from minitron.models.arch import ModelArch

        p = Path(spec).expanduser()
        arch = ModelArch.from_dict(read_manifest(p)["arch"])
        return arch, json.loads((p / "hf_config.json").read_text()), tokenizer_path(p)
    src = runtime.on_main(resolve_model, spec)
    hf_config = read_hf_config(src)
    return arch_from_hf_config(hf_config), hf_config, src
