"""Allowed values shared by the config schemas and the modules that implement them.

A leaf module (it imports nothing from minitron): ``minitron/config`` validates a field
against these lists, the domain module (the readers, the task loader, the importance
reducers, the depth search) branches on them, and neither has to import the other.
"""

from __future__ import annotations

import importlib.util

CORPORA = ("wiki", "news", "shakespeare")
"""Built-in corpora (``builtin:NAME``), shipped inside installed packages."""

TEXT_UNITS = ("file", "paragraph", "line")
"""How a plain-text input is split into documents."""

TASK_FORMATS = ("auto", "winogrande", "generic")
"""Row formats of a multiple-choice task file."""

SEQ_AGG = ("mean", "l2", "max")
"""Reduction of an activation over the sequence (importance estimation)."""

BATCH_AGG = ("l2", "mean", "max")
"""Reduction of the per-sequence values over the calibration batch."""

DISTILL_LOSSES = ("forward_kl", "reverse_kl", "jsd", "topk_kl")
"""Logit distillation losses."""

DEPTH_CRITERIA = ("task", "lm_loss", "block_influence")
"""How depth pruning chooses the layers to drop."""


def is_builtin(spec: str) -> bool:
    """Whether an input names a built-in corpus or set (``builtin:NAME``)."""
    return spec.startswith("builtin:")


def builtin_name(spec: str) -> str:
    return spec.split(":", 1)[1]


BENCH_BACKENDS = ("transformers", "vllm", "trtllm")
"""Inference engines ``minitron bench`` can measure."""

BENCH_BACKEND_MODULES = {"transformers": "transformers", "vllm": "vllm", "trtllm": "tensorrt_llm"}


def bench_backend_available(backend: str) -> bool:
    """Whether a benchmark backend's package is installed (found, not imported)."""
    return importlib.util.find_spec(BENCH_BACKEND_MODULES[backend]) is not None
