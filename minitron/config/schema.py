"""The configuration of every minitron command: one dataclass per stage, one
documented field each. ``docs/configuration.md`` is generated from these
(``python -m minitron.config.docgen``), so the docs cannot drift.

``validate()`` methods check what types cannot: ranges, choices, files that must
exist, combinations. They run at load, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from minitron.choices import (
    BENCH_BACKENDS,
    CORPORA,
    TASK_FORMATS,
    TEXT_UNITS,
    bench_backend_available,
    builtin_name,
    is_builtin,
)
from minitron.config.checks import (
    DTYPE_CHOICES,
    IMPL_CHOICES,
    choice,
    dir_out,
    json_out,
    layout,
    out_free,
    positive,
)
from minitron.config.loader import REQUIRED, doc
from minitron.errors import ConfigError
from minitron.formats import is_megatron


def check_inputs(inputs: List[str], field: str = "inputs") -> None:
    """Corpora to prepare: every file exists and every builtin:NAME is a built-in corpus."""
    if not inputs:
        raise ConfigError(field, "is empty; give at least one file or builtin:NAME")
    for i, spec in enumerate(inputs):
        if is_builtin(spec):
            choice(builtin_name(spec), CORPORA, f"{field}[{i}] (builtin:NAME)")
        elif not Path(spec).is_file():
            raise ConfigError(f"{field}[{i}]", f"{spec} does not exist; fix the path or remove it")


def check_split(split: str, field: str = "split") -> list[float]:
    """``"98,2,0"`` -> [98.0, 2.0, 0.0]: three non-negative shares, not all zero."""
    try:
        nums = [float(x) for x in split.split(",")]
    except ValueError:
        nums = []
    if len(nums) != 3 or min(nums) < 0 or sum(nums) <= 0:
        raise ConfigError(field, f"{split!r}: write three non-negative numbers, e.g. 98,2,0")
    return nums


def check_backends(backends: List[str], field: str = "backends") -> None:
    """Benchmark backends: known names, and each one named explicitly is installed."""
    for b in backends:
        if b != "auto":
            choice(b, BENCH_BACKENDS + ("auto",), field)
            if not bench_backend_available(b):
                pkg = {
                    "vllm": "vllm",
                    "trtllm": "tensorrt-llm (NVIDIA's container)",
                    "transformers": "transformers",
                }[b]
                raise ConfigError(
                    field,
                    f"{b} was asked for but is not installed here; "
                    f"install {pkg}, or use backends=[auto] to skip it",
                )


def check_task_source(value: str, field: str) -> None:
    """A multiple-choice task source (see ``MCTaskConfig.path``), as far as it can be checked
    without reading it: built-in names, the hf: spelling, and local files that must exist."""
    if value in ("builtin:winogrande", "bigbench"):
        return
    if value.startswith("builtin:"):
        raise ConfigError(
            field,
            f"{value!r} is not a built-in task; the built-in one is "
            "builtin:winogrande (or give a .jsonl file)",
        )
    if value.startswith("hf:"):
        if len(value.split(":")) not in (3, 4):
            raise ConfigError(
                field, f"{value!r}: write hf:DATASET:SPLIT or hf:DATASET:CONFIG:SPLIT"
            )
        return
    path = value.split(":", 1)[1] if value.startswith("bigbench:") else value
    if not Path(path).is_file():
        raise ConfigError(
            field,
            f"{path} does not exist; give a .jsonl file, builtin:winogrande, "
            "bigbench[:SDIST.tar.gz] or hf:DATASET[:CONFIG]:SPLIT",
        )


@dataclass
class ImportConfig:
    """``minitron import``: a Hugging Face, Megatron-LM, Megatron-Bridge or NeMo 2 checkpoint
    -> a minitron (megatron-core) checkpoint."""

    hf: str = doc(
        "",
        "Source model: a local HF directory (config.json + safetensors), a Hub "
        "id (org/name, needs internet) or an embedded model name (smollm2-135m). A "
        "Megatron-family directory given here is detected and read as ``megatron``.",
    )
    megatron: str = doc(
        "",
        "Source model instead of ``hf``: a Megatron-LM or Megatron-Bridge "
        "checkpoint directory (holding latest_checkpointed_iteration.txt, or an "
        "iter_NNNNNNN/release directory itself) or a NeMo 2 checkpoint "
        "(weights/ + context/). Only the model tensors are read.",
    )
    tokenizer: str = doc(
        "",
        "Megatron sources: the HF tokenizer (directory or Hub id) when the "
        "checkpoint carries none (Megatron-Bridge's tokenizer/, NeMo 2's "
        "context/nemo_tokenizer/, or the local directory Megatron-LM's "
        "args.tokenizer_model names).",
    )
    out: str = doc(REQUIRED, "Directory to write the minitron checkpoint to (written atomically).")
    tp: int = doc(
        1,
        "Tensor-parallel size to build the model with while importing. The saved "
        "checkpoint does not depend on it: it loads at any TP/PP.",
    )
    pp: int = doc(1, "Pipeline-parallel size to build the model with while importing.")
    dtype: str = doc(
        "float32", "Parameter dtype of the saved weights: float32, bfloat16 or float16."
    )
    vocab_pad_multiple: int = doc(
        1024,
        "Pad the embedding rows to a multiple of this, so every "
        "TP size that divides it can load the checkpoint.",
    )
    transformer_impl: str = doc(
        "auto",
        "Layer implementation: auto (Transformer Engine when it "
        "imports with CUDA, else local), local, transformer_engine.",
    )
    overwrite: bool = doc(False, "Replace ``out`` if it exists.")

    def validate(self):
        layout(self)
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        choice(self.transformer_impl, IMPL_CHOICES, "transformer_impl")
        positive(self.vocab_pad_multiple, "vocab_pad_multiple")
        if bool(self.hf) == bool(self.megatron):
            raise ConfigError(
                "hf",
                "give exactly one source: hf=DIR|ID (Hugging Face) or "
                "megatron=DIR (Megatron-LM, Megatron-Bridge, NeMo 2)",
            )
        if self.megatron:
            if not is_megatron(self.megatron):
                raise ConfigError(
                    "megatron",
                    f"{self.megatron} is not a Megatron-LM/Bridge "
                    "checkpoint (latest_checkpointed_iteration.txt, or an "
                    "iter_*/release directory with metadata.json) nor a NeMo 2 "
                    "one (weights/ + context/)",
                )
        if self.tokenizer and not self.megatron and not is_megatron_source(self.hf):
            raise ConfigError(
                "tokenizer", "is for Megatron sources; an HF source brings its own tokenizer"
            )
        out_free(self.out, self.overwrite)


def is_megatron_source(spec: str) -> bool:
    return bool(spec) and is_megatron(spec)


@dataclass
class ExportConfig:
    """``minitron export``: a minitron checkpoint -> a deployable format."""

    ckpt: str = doc(REQUIRED, "minitron checkpoint directory (holds manifest.json).")
    out: str = doc(REQUIRED, "Directory to write the exported model to (written atomically).")
    format: str = doc(
        "hf",
        "Output format: hf (a directory transformers and vLLM load), "
        "trtllm (a TensorRT-LLM checkpoint: config.json + rank{i}.safetensors) or "
        "megatron (a Megatron-LM / Megatron-Bridge checkpoint: "
        "latest_checkpointed_iteration.txt + release/ with args and "
        "run_config.yaml).",
    )
    tp: int = doc(1, "format=trtllm: tensor-parallel ranks to write (one safetensors file each).")
    dtype: str = doc(
        "auto",
        "dtype of the exported weights: auto (the checkpoint's), float32, bfloat16, float16.",
    )
    overwrite: bool = doc(False, "Replace ``out`` if it exists.")

    def validate(self):
        choice(self.format, ("hf", "trtllm", "megatron"), "format")
        positive(self.tp, "tp")
        if self.format != "trtllm" and self.tp != 1:
            raise ConfigError(
                "tp",
                "applies to format=trtllm only (an HF directory is not split; "
                "a Megatron checkpoint holds global tensors and loads at any TP)",
            )
        choice(self.dtype, ("auto",) + DTYPE_CHOICES, "dtype")
        if not (Path(self.ckpt) / "manifest.json").is_file():
            raise ConfigError(
                "ckpt",
                f"{self.ckpt} is not a minitron checkpoint (no manifest.json); "
                "create one with `minitron import`",
            )
        out_free(self.out, self.overwrite)


@dataclass
class ParamsConfig:
    """``minitron params``: exact parameter counts of a HF config, optionally resized."""

    hf_config: str = doc(REQUIRED, "A HF config.json, or a model directory holding one.")
    hidden_size: Optional[int] = doc(None, "Override the hidden size (embedding channels).")
    ffn_hidden_size: Optional[int] = doc(None, "Override the MLP width (intermediate_size).")
    num_layers: Optional[int] = doc(None, "Override the number of layers.")
    num_attention_heads: Optional[int] = doc(None, "Override the number of query heads.")
    num_query_groups: Optional[int] = doc(None, "Override the number of KV heads (groups).")
    json: bool = doc(False, "Print JSON instead of a table.")

    def overrides(self) -> dict:
        keys = (
            "hidden_size",
            "ffn_hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_query_groups",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass
class PrepareConfig:
    """``minitron data prepare``: text/jsonl corpora -> megatron-core indexed datasets."""

    inputs: List[str] = doc(
        REQUIRED,
        "Input files (.jsonl, or text) and built-in corpora "
        "(builtin:wiki, builtin:news, builtin:shakespeare). Each becomes one "
        "indexed dataset named after it.",
    )
    tokenizer: str = doc(
        REQUIRED,
        "Where the tokenizer comes from: a HF directory, Hub id, "
        "embedded model name or minitron checkpoint.",
    )
    out: str = doc(REQUIRED, "Output directory for <name>.bin/.idx and datasets.json.")
    jsonl_key: str = doc("text", "Field of each jsonl object that holds the document text.")
    text_unit: str = doc("file", "How text files split into documents: file, paragraph, line.")
    eod_token: Optional[str] = doc(
        None, "Token appended after every document; default: the tokenizer's eos token."
    )
    add_bos: bool = doc(False, "Prepend the tokenizer's bos token to every document (Llama 3).")
    batch_docs: int = doc(
        64, "Documents tokenized per call to the tokenizer (one task of a worker)."
    )
    workers: int = doc(
        0,
        "Tokenizer processes per rank; 0: the cores available to this process "
        "(shared among the ranks of a node under torchrun), at most one per 8 MB "
        "of input files, 1: tokenize in this process. The datasets are byte-identical for every value.",
    )
    overwrite: bool = doc(False, "Re-tokenize datasets that already exist in ``out``.")

    def validate(self):
        check_inputs(self.inputs, "inputs")
        choice(self.text_unit, TEXT_UNITS, "text_unit")
        positive(self.batch_docs, "batch_docs")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(
                "workers", f"must be >= 0 (0: the cores available), got {self.workers!r}"
            )


@dataclass
class DataConfig:
    """Which prepared data a stage reads, and how it is cut into samples."""

    paths: List[str] = doc(
        REQUIRED,
        "Prepared dataset prefixes (dir/name, without .bin/.idx) or "
        "directories written by `minitron data prepare` (all their datasets).",
    )
    weights: Optional[List[float]] = doc(
        None,
        "Blend weights, one per dataset, >= 0 and not all 0; default: proportional to their sizes.",
    )
    split: str = doc(
        "98,2,0",
        "Train,validation,test split of the documents of every dataset, "
        "as megatron-core reads it (contiguous document ranges).",
    )
    seq_length: int = doc(512, "Tokens per sample.")
    seed: int = doc(1234, "Seed for sample shuffling: the same seed gives the same samples.")
    cache_dir: Optional[str] = doc(
        None, "Where megatron-core caches sample indices; default: <first dataset dir>/cache."
    )

    def validate(self):
        if not self.paths:
            raise ConfigError("paths", "is empty")
        positive(self.seq_length, "seq_length")
        if self.weights is not None and len(self.weights) != len(self.paths):
            raise ConfigError(
                "weights",
                f"has {len(self.weights)} entries for {len(self.paths)} "
                "paths; give one weight per path or none",
            )
        if self.weights is not None and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ConfigError(
                "weights", f"{list(self.weights)}: give non-negative weights, not all 0"
            )
        check_split(self.split)


@dataclass
class LossConfig:
    """``minitron loss``: token-weighted LM loss of a model on held-out samples."""

    model: str = doc(
        REQUIRED,
        "A minitron checkpoint, or a HF source (directory, Hub id, "
        "embedded name) imported in memory.",
    )
    data: DataConfig = doc(factory=DataConfig, text="The prepared data to evaluate on.")
    split: str = doc("valid", "Which split to score: train, valid or test.")
    num_samples: int = doc(
        64, "Samples scored (fixed by data.seed, so two models see the same tokens)."
    )
    micro_batch_size: int = doc(4, "Samples per forward pass.")
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size.")
    dtype: str = doc("float32", "Compute dtype: float32, bfloat16, float16.")
    out: Optional[str] = doc(
        None, "Also write the result as JSON to this file (replaced if it exists; checked at load)."
    )

    def validate(self):
        layout(self)
        choice(self.split, ("train", "valid", "test"), "split")
        positive(self.num_samples, "num_samples")
        positive(self.micro_batch_size, "micro_batch_size")
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        json_out(self.out, "out", "loss.json")


@dataclass
class DemoConfig:
    """``minitron demo``: the embedded default end to end (import, prepare, held-out loss)."""

    model: str = doc("smollm2-135m", "Source model (embedded name, HF directory or Hub id).")
    workdir: str = doc("runs/smollm2-demo", "Experiment directory: checkpoint, data, results.")
    corpora: List[str] = doc(
        factory=lambda: ["builtin:wiki", "builtin:news", "builtin:shakespeare"],
        text="Corpora to prepare and score (files or builtin:NAME).",
    )
    eod_token: Optional[str] = doc("<|endoftext|>", "Document separator token (SmolLM2's).")
    seq_length: int = doc(512, "Tokens per held-out sample.")
    num_samples: int = doc(16, "Held-out samples scored per corpus.")
    micro_batch_size: int = doc(4, "Samples per forward pass.")
    tp: int = doc(1, "Tensor-parallel size (run under torchrun with tp x pp processes).")
    pp: int = doc(1, "Pipeline-parallel size.")

    def validate(self):
        layout(self)
        positive(self.seq_length, "seq_length")
        positive(self.num_samples, "num_samples")
        positive(self.micro_batch_size, "micro_batch_size")
        if not self.corpora:
            raise ConfigError("corpora", "is empty")


@dataclass
class MCTaskConfig:
    """A multiple-choice task scored by log-likelihood."""

    name: str = doc("winogrande", "Name of the task in the results.")
    path: str = doc(
        "builtin:winogrande",
        "Items: a .jsonl file, builtin:winogrande (BIG-bench's "
        "Winogrande pairs, shipped), bigbench or bigbench:SDIST.tar.gz (parsed from the "
        "bigbench package), or hf:DATASET[:CONFIG]:SPLIT (needs internet). Local files "
        "must exist at load.",
    )
    format: str = doc(
        "auto",
        "Row format: winogrande (sentence, option1, option2, answer), generic "
        "(context, choices, gold) or auto (from the first row's fields).",
    )
    num_fewshot: int = doc(
        0, "Examples put before each item (gold choice filled in), separated by blank lines."
    )
    fewshot_path: Optional[str] = doc(
        None,
        "Where few-shot examples come from; default: the "
        "evaluated items, never the item being scored.",
    )
    limit: Optional[int] = doc(
        None, "Score a seeded random subset of this many items (all if null)."
    )
    seed: int = doc(1234, "Seed for the subset and the few-shot draws.")

    def validate(self):
        choice(self.format, TASK_FORMATS, "format")
        if self.num_fewshot < 0:
            raise ConfigError("num_fewshot", f"must be >= 0, got {self.num_fewshot}")
        if self.limit is not None:
            positive(self.limit, "limit")
        for field in ("path", "fewshot_path"):
            value = getattr(self, field)
            if value:
                check_task_source(value, field)


@dataclass
class LossTaskConfig:
    """Held-out LM loss on prepared data."""

    name: str = doc(REQUIRED, "Name of this loss in the results (e.g. the corpus).")
    data: DataConfig = doc(factory=DataConfig, text="The prepared data and how it is sampled.")
    split: str = doc("valid", "Split to score: train, valid or test.")
    num_samples: int = doc(64, "Samples scored (fixed by data.seed).")

    def validate(self):
        choice(self.split, ("train", "valid", "test"), "split")
        positive(self.num_samples, "num_samples")


@dataclass
class EvalConfig:
    """``minitron eval``: LM loss and multiple-choice accuracy of a model, at any TP/PP."""

    model: str = doc(
        REQUIRED,
        "A minitron checkpoint, or a HF source (directory, Hub id, "
        "embedded name) imported in memory.",
    )
    tasks: List[MCTaskConfig] = doc(factory=list, text="Multiple-choice tasks.")
    loss: List[LossTaskConfig] = doc(factory=list, text="LM-loss evaluations.")
    limit: Optional[int] = doc(None, "If set, overrides every task's limit.")
    num_fewshot: Optional[int] = doc(None, "If set, overrides every task's num_fewshot.")
    skip_layers: List[int] = doc(
        factory=list,
        text="Evaluate with these layers (0-based, global) "
        "skipped, weights untouched: a depth-pruning preview.",
    )
    batch_size: int = doc(32, "Multiple-choice requests (item x choice) per forward pass.")
    micro_batch_size: int = doc(4, "LM-loss samples per forward pass.")
    max_length: int = doc(2048, "Longest request in tokens; longer contexts lose their start.")
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size.")
    dtype: str = doc("float32", "Compute dtype: float32, bfloat16, float16.")
    out: Optional[str] = doc(
        None, "Write the results as JSON to this file (replaced if it exists; checked at load)."
    )
    progress: bool = doc(True, "Show a progress bar (rank 0).")

    def validate(self):
        layout(self)
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        positive(self.batch_size, "batch_size")
        positive(self.micro_batch_size, "micro_batch_size")
        positive(self.max_length, "max_length")
        if not self.tasks and not self.loss:
            raise ConfigError("tasks", "nothing to evaluate: give tasks and/or loss")
        names = [t.name for t in self.tasks] + [t.name for t in self.loss]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError("tasks", f"names must be unique; repeated: {', '.join(dup)}")
        if any(i < 0 for i in self.skip_layers):
            raise ConfigError("skip_layers", "layer indices are 0-based and non-negative")
        json_out(self.out, "out", "eval.json")


@dataclass
class LmEvalConfig:
    """``minitron lm-eval``: any lm-evaluation-harness task on a minitron model (needs lm-eval)."""

    model: str = doc(REQUIRED, "A minitron checkpoint or HF source.")
    tasks: List[str] = doc(REQUIRED, "lm-eval task names (from lm-eval, or from include_path).")
    include_path: Optional[str] = doc(
        None,
        "Directory of extra lm-eval task YAMLs (e.g. local jsonl tasks that need no Hub access).",
    )
    num_fewshot: Optional[int] = doc(None, "Few-shot examples; default: each task's own.")
    limit: Optional[int] = doc(None, "Score only the first N documents of each task.")
    batch_size: int = doc(32, "Requests per forward pass (prompts per generation batch).")
    max_length: int = doc(
        2048,
        "Longest request in tokens (a generation prompt keeps its last "
        "max_length - max_gen_toks tokens).",
    )
    apply_chat_template: bool = doc(
        False,
        "Render prompts with the model's chat template (its "
        "tokenizer's, else plain User: / Assistant:), as lm-eval's "
        "--apply_chat_template; for instruction-tuned models.",
    )
    fewshot_as_multiturn: Optional[bool] = doc(
        None,
        "Few-shot examples as earlier turns of the "
        "chat; default: on with apply_chat_template, as "
        "in lm-eval.",
    )
    system_instruction: Optional[str] = doc(None, "A system message before every prompt.")
    gen_kwargs: Optional[str] = doc(
        None,
        "Override the generation tasks' settings, in lm-eval's "
        "syntax (e.g. max_gen_toks=64,temperature=0).",
    )
    seed: int = doc(1234, "Seed of lm-eval's sampling of documents and of generation sampling.")
    confirm_run_unsafe_code: bool = doc(
        False,
        "Allow tasks that execute the model's code "
        "(humaneval, mbpp); also set HF_ALLOW_CODE_EVAL=1.",
    )
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size.")
    dtype: str = doc("float32", "Compute dtype.")
    out: Optional[str] = doc(
        None,
        "Write lm-eval's results dict as JSON to this file (replaced "
        "if it exists; checked at load).",
    )
    samples: Optional[str] = doc(
        None, "Write every document's model output and metrics as jsonl to this file."
    )

    def validate(self):
        layout(self)
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        if not self.tasks:
            raise ConfigError("tasks", "is empty")
        if self.include_path and not Path(self.include_path).is_dir():
            raise ConfigError("include_path", f"{self.include_path} is not a directory")
        json_out(self.out, "out", "lm_eval.json")
        if self.fewshot_as_multiturn is True and not self.apply_chat_template:
            raise ConfigError("fewshot_as_multiturn", "needs apply_chat_template=true")


@dataclass
class BenchModelConfig:
    """One model to benchmark."""

    name: str = doc(REQUIRED, "Label in the results and the chart.")
    path: str = doc(
        REQUIRED,
        "A HF directory, or a minitron checkpoint (exported to HF first); "
        "checked before the first model is measured.",
    )


@dataclass
class BenchConfig:
    """``minitron bench``: inference throughput of several models, side by side."""

    models: List[BenchModelConfig] = doc(
        factory=list, text="The models; the first is the baseline unless `baseline` names another."
    )
    out: str = doc(REQUIRED, "Directory for bench.json, bench.png and exported HF copies.")
    backends: List[str] = doc(
        factory=lambda: ["transformers"],
        text="transformers, vllm, trtllm, or "
        "auto (every installed one). A backend named explicitly must be "
        "installed; auto skips missing ones with a message.",
    )
    device: str = doc("auto", "auto (cuda when available), cpu or cuda.")
    dtype: str = doc("auto", "auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.")
    batch_sizes: List[int] = doc(factory=lambda: [1, 4], text="Batch sizes to measure.")
    prompt_length: int = doc(128, "Prompt tokens (prefill).")
    decode_tokens: int = doc(32, "Tokens generated per sequence (decode).")
    repeats: int = doc(
        3,
        "Rounds: every model is measured once per round (after a warm-up), "
        "in an order that rotates between rounds; medians are reported, and a "
        "figure whose rounds spread by more than 20% is marked unstable (give "
        "at least 2 to see the spread).",
    )
    threads: Optional[int] = doc(None, "CPU threads for torch (default: torch's choice).")
    baseline: Optional[str] = doc(None, "Name of the model speed-ups are relative to.")

    def validate(self):
        if len(self.models) < 1:
            raise ConfigError("models", "give at least one model (name, path)")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError("models", "model names must be unique")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError("baseline", f"{self.baseline!r} is not one of {names}")
        check_backends(self.backends, "backends")
        dir_out(self.out, "out")
        choice(self.device, ("auto", "cpu", "cuda"), "device")
        choice(self.dtype, ("auto",) + DTYPE_CHOICES, "dtype")
        for f in ("prompt_length", "decode_tokens", "repeats"):
            positive(getattr(self, f), f)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError("batch_sizes", "give positive batch sizes")
