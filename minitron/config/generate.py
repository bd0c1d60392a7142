"""Configs of text generation: the sampling settings, and ``minitron generate``.

minitron generate --model ckpt/student --prompt "The capital of France is"
minitron generate --model ckpt/student --input prompts.jsonl --out completions.jsonl chat=auto
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from minitron.config.checks import DTYPE_CHOICES, choice, layout, positive
from minitron.config.loader import REQUIRED, doc
from minitron.errors import ConfigError

CHAT_CHOICES = ("none", "auto", "plain")


@dataclass
class SamplingConfig:
    """How tokens are chosen and when a completion ends."""

    max_new_tokens: int = doc(64, "Most tokens generated per prompt.")
    do_sample: bool = doc(
        False,
        "Sample (temperature, top_k, top_p); false: greedy (the most likely token every step).",
    )
    temperature: float = doc(1.0, "Softmax temperature when sampling (> 0).")
    top_k: int = doc(
        0,
        "Sample among the k most likely tokens (0: all). Not together with "
        "top_p (megatron-core's sampler takes one of them).",
    )
    top_p: float = doc(
        0.0, "Nucleus sampling: the smallest set of tokens whose probability reaches p (0: off)."
    )
    seed: int = doc(
        1234,
        "Seed of the sampler: the same prompts, batch size and seed give the same completions.",
    )
    stop: List[str] = doc(
        factory=list,
        text="Stop strings: a completion ends before the first "
        "one it contains (the end-of-sequence token always ends it).",
    )

    def validate(self):
        positive(self.max_new_tokens, "max_new_tokens")
        if self.do_sample:
            if not self.temperature > 0:
                raise ConfigError(
                    "temperature",
                    f"{self.temperature}: must be > 0 when sampling "
                    "(for greedy decoding set do_sample=false)",
                )
            if self.top_k < 0:
                raise ConfigError("top_k", f"{self.top_k}: must be >= 0")
            if not 0.0 <= self.top_p <= 1.0:
                raise ConfigError("top_p", f"{self.top_p}: must be in [0, 1]")
            if self.top_k > 0 and self.top_p > 0:
                raise ConfigError(
                    "top_p",
                    "top_k and top_p cannot both be set (megatron-core's "
                    "sampler applies one of them): set top_k=0 or top_p=0",
                )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("stop", f"{self.stop}: stop strings must be non-empty strings")


@dataclass
class GenerateConfig:
    """``minitron generate``: completions of prompts on megatron-core's inference engine, at any
    TP/PP."""

    model: str = doc(REQUIRED, "A minitron checkpoint, HF source or Megatron-family checkpoint.")
    prompt: Optional[str] = doc(
        None, "One prompt (printed with its completion). Exactly one of prompt and input."
    )
    input: Optional[str] = doc(
        None,
        "A jsonl file of prompts: one object per line with "
        "``prompt`` (text) or ``messages`` (a chat), and optionally ``id``.",
    )
    out: Optional[str] = doc(
        None,
        "Completions jsonl, one row per prompt in input order; a rerun "
        "continues after the rows already there (required with input).",
    )
    chat: str = doc(
        "none",
        "none (prompts as given), auto (the tokenizer's chat template, as "
        "``minitron align`` renders) or plain (User: / Assistant:).",
    )
    sampling: SamplingConfig = doc(factory=SamplingConfig, text="Sampling and stopping.")
    batch_size: int = doc(8, "Prompts per batch (prompts of similar length are batched together).")
    tokenizer: Optional[str] = doc(None, "Tokenizer directory when the model has none.")
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size.")
    dtype: str = doc("float32", "Compute dtype.")

    def validate(self):
        layout(self)  # sampling is validated as a nested config
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        choice(self.chat, CHAT_CHOICES, "chat")
        positive(self.batch_size, "batch_size")
        if (self.prompt is None) == (self.input is None):
            raise ConfigError(
                "prompt",
                "give exactly one of prompt (one text) and input (a jsonl file of prompts)",
            )
        if self.input is not None:
            if not Path(self.input).is_file():
                raise ConfigError("input", f"{self.input} is not a file")
            if not self.out:
                raise ConfigError("out", "input needs out: the completions jsonl to write")
            if Path(self.out).resolve() == Path(self.input).resolve():
                raise ConfigError("out", "must differ from input")
