"""The tokenizer of a model source (HF dir, Hub id, embedded name or minitron checkpoint)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from minitron.errors import ConfigError


def tokenizer_dir(spec: str) -> Path:
    """Directory holding tokenizer files for ``spec``."""
    p = Path(spec).expanduser()
    if (p / "manifest.json").is_file():  # a minitron checkpoint
        return p / "tokenizer"
    from minitron.formats import is_megatron

    if is_megatron(p):
        from minitron.checkpoint import megatron

        # Megatron-LM, Megatron-Bridge, NeMo 2
        return megatron.describe(megatron.open_source(p))[2]
    if p.is_dir():  # a HF model or tokenizer directory
        return p
    from minitron.models.sources import resolve_model

    return resolve_model(spec)


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    d = tokenizer_dir(spec)
    try:
        return AutoTokenizer.from_pretrained(str(d))
    except Exception as e:
        raise ConfigError(
            "tokenizer", f"no usable tokenizer in {d} ({type(e).__name__}: {e})"
        ) from None


def token_id(tok, token: str, field: str = "eod_token") -> int:
    """Id of a single special token, or a clear error."""
    tid = tok.convert_tokens_to_ids(token)
    if tid is None or tid == tok.unk_token_id and token != tok.unk_token:
        raise ConfigError(field, f"{token!r} is not a token of this tokenizer")
    return int(tid)


def fingerprint(tok) -> str:
    """Stable hash of the tokenizer's vocabulary and rules."""
    backend = getattr(tok, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tok.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_batch(tok, texts: list[str]) -> list[list[int]]:
    """Token ids without special tokens; the Rust backend directly when there is one."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tok(texts, add_special_tokens=False)["input_ids"]


class DatasetTokenizer:
    """The three facts megatron-core's GPTDataset asks of a tokenizer."""

    def __init__(self, vocab_size: int, eod: int):
        self.vocab_size = vocab_size
        self.eod = eod
        self.pad = -1  # no real token: GPTDataset then pads with its own sentinel
        # part of the description megatron-core hashes to name its cached sample indices
        self.unique_identifiers = {
            "class": "minitron.DatasetTokenizer",
            "vocab_size": vocab_size,
            "eod": eod,
        }
