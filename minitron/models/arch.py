"""The model architecture minitron works on: a Llama-family decoder, read from and
written back to a Hugging Face ``config.json``.

One dataclass, :class:`ModelArch`, holds every size that pruning may change
(hidden, FFN, heads, groups, layers) and the fixed facts (vocabulary, RoPE,
norm epsilon, tied embeddings). Supported: Llama 2/3/3.1/3.2 (with the
``llama3`` RoPE scaling), Mistral and Mistral NeMo (``head_dim`` decoupled from
``hidden_size / num_attention_heads``), SmolLM2 (tied embeddings).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Optional

from minitron.errors import ConfigError

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
DEFAULT_VOCAB_PAD_MULTIPLE = 1024


@dataclasses.dataclass
class ModelArch:
    """Sizes and fixed facts of a Llama-family decoder (megatron-core GPTModel)."""

    family: str
    """HF ``model_type``: ``llama`` or ``mistral``."""
    hidden_size: int
    """Width of the residual stream (embedding channels)."""
    ffn_hidden_size: int
    """Width of the SwiGLU MLP (HF ``intermediate_size``)."""
    num_layers: int
    """Number of transformer layers."""
    num_attention_heads: int
    """Query heads."""
    num_query_groups: int
    """KV heads (GQA groups); divides ``num_attention_heads``."""
    head_dim: int
    """Channels per head (megatron ``kv_channels``); not tied to hidden/heads."""
    vocab_size: int
    """Tokenizer vocabulary (rows of the HF embedding)."""
    padded_vocab_size: int
    """Rows of the megatron-core embedding: ``vocab_size`` rounded up so every TP size
    up to 8 divides it; the extra rows are zero and masked out of every softmax."""
    max_position_embeddings: int
    """Longest sequence the model was trained for."""
    rope_theta: float
    """RoPE base."""
    rope_scaling: Optional[dict] = None
    """HF ``llama3`` RoPE scaling parameters, or None."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    tie_word_embeddings: bool = False
    """Output layer shares the embedding matrix (SmolLM2, Llama 3.2 1B/3B)."""

    def __post_init__(self):
        def need(ok: bool, field: str, msg: str):
            if not ok:
                raise ConfigError(field, msg)

        for f in (
            "hidden_size",
            "ffn_hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_query_groups",
            "head_dim",
            "vocab_size",
        ):
            need(
                int(getattr(self, f)) > 0, f, f"must be a positive integer, got {getattr(self, f)}"
            )
        need(
            self.num_attention_heads % self.num_query_groups == 0,
            "num_query_groups",
            f"must divide num_attention_heads={self.num_attention_heads}; "
            f"got {self.num_query_groups} (valid: {divisors(self.num_attention_heads)})",
        )
        need(
            self.padded_vocab_size >= self.vocab_size,
            "padded_vocab_size",
            f"must be >= vocab_size={self.vocab_size}",
        )
        need(self.head_dim % 2 == 0, "head_dim", f"must be even for RoPE, got {self.head_dim}")

    @property
    def heads_per_group(self) -> int:
        return self.num_attention_heads // self.num_query_groups

    def replace(self, **sizes) -> ModelArch:
        """A copy with some sizes changed (and validated), e.g. a pruning target."""
        unknown = set(sizes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(
                sorted(unknown)[0],
                f"is not an architecture field; valid: {', '.join(PRUNABLE_FIELDS)}",
            )
        return dataclasses.replace(self, **sizes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelArch:
        return cls(**d)


PRUNABLE_FIELDS = (
    "hidden_size",
    "ffn_hidden_size",
    "num_layers",
    "num_attention_heads",
    "num_query_groups",
)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def pad_vocab(vocab_size: int, multiple: int = DEFAULT_VOCAB_PAD_MULTIPLE) -> int:
    return int(math.ceil(vocab_size / multiple) * multiple)


def _rope(cfg: dict) -> tuple[float, Optional[dict]]:
    """(rope_theta, llama3 scaling dict or None) from a transformers 4.x or 5.x config."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or None
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind == "default":
            return theta, None
        if kind != "llama3":
            raise ConfigError(
                "rope_scaling",
                f"RoPE type {kind!r} is not supported; supported: "
                "none/default and 'llama3' (Llama 3.1/3.2)",
            )
        scaling = {
            "rope_type": "llama3",
            "factor": float(scaling["factor"]),
            "low_freq_factor": float(scaling.get("low_freq_factor", 1.0)),
            "high_freq_factor": float(scaling.get("high_freq_factor", 4.0)),
            "original_max_position_embeddings": int(
                scaling.get("original_max_position_embeddings", 8192)
            ),
        }
    return theta, scaling


def arch_from_hf_config(
    cfg: dict, vocab_pad_multiple: int = DEFAULT_VOCAB_PAD_MULTIPLE
) -> ModelArch:
    """Read a HF ``config.json`` dict; refuse what a Llama-family GPTModel cannot express."""
    mt = cfg.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            "model_type",
            f"{mt!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (Llama 2/3/3.1/3.2, SmolLM, Mistral, "
            "Mistral NeMo)",
        )
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise ConfigError(key, "biases are not supported (Llama/Mistral have none)")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(
            "hidden_act", f"{act!r} is not supported; the MLP must be SwiGLU ('silu')"
        )
    window = cfg.get("sliding_window")
    if window is not None and window < cfg.get("max_position_embeddings", 0):
        warnings.warn(
            f"sliding_window={window}: minitron uses full causal attention, exact only "
            f"for sequences up to {window} tokens",
            stacklevel=2,
        )
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    head_dim = cfg.get("head_dim") or hidden // heads
    theta, scaling = _rope(cfg)
    vocab = int(cfg["vocab_size"])
    return ModelArch(
        family=mt,
        hidden_size=hidden,
        ffn_hidden_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_attention_heads=heads,
        num_query_groups=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        vocab_size=vocab,
        padded_vocab_size=pad_vocab(vocab, vocab_pad_multiple),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )


def hf_config_for(arch: ModelArch, base: dict) -> dict:
    """``base`` (the source model's HF config) with ``arch``'s sizes written in.

    ``head_dim`` is always written, so HF never re-derives it from hidden/heads
    (a pruned hidden size would otherwise imply a wrong head size)."""
    cfg = copy.deepcopy(base)
    cfg.update(
        hidden_size=arch.hidden_size,
        intermediate_size=arch.ffn_hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_query_groups,
        head_dim=arch.head_dim,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings,
    )
    kinds = set(cfg.get("layer_types") or [])  # transformers 5: one attention type per layer
    if len(kinds) > 1:
        raise ConfigError("layer_types", f"mixed attention types {sorted(kinds)} are not supported")
    if kinds:
        cfg["layer_types"] = [kinds.pop()] * arch.num_layers
    check = arch_from_hf_config(cfg, arch.padded_vocab_size)
    for f in PRUNABLE_FIELDS + ("head_dim", "vocab_size"):
        if getattr(check, f) != getattr(arch, f):
            raise ConfigError(
                f, f"the HF config would load as {getattr(check, f)}, not {getattr(arch, f)}"
            )
    return cfg


def read_hf_config(path: str | Path) -> dict:
    """Load ``config.json`` from a file or a model directory, with a clear error."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(
            "hf_config",
            f"{p} does not exist; pass a model directory that holds "
            "config.json, or the config.json file itself",
        )
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError("hf_config", f"{p} is not valid JSON ({e})") from None


def load_arch(path: str | Path, overrides: Optional[dict[str, Any]] = None) -> ModelArch:
    """Architecture from a HF config path, with optional size overrides."""
    arch = arch_from_hf_config(read_hf_config(path))
    return arch.replace(**overrides) if overrides else arch
