"""The table of ``minitron`` sub-commands: each one's config schema, recipe and flags.

A config-level module (it imports only config schemas, and names recipes by module name),
so that ``minitron.cli`` dispatches on it and ``minitron.config.docgen`` documents it
without either importing the other.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from minitron.config import align, generate, prune, run, schema, search, train


@dataclasses.dataclass(frozen=True)
class Command:
    schema: type
    recipe: str  # the module with main(cfg): minitron.recipes.X, or minitron.pipeline.run
    help: str
    flags: tuple = ()  # (flag, key, kind) with kind in value | true | append | task | csv
    replaces: Optional[str] = None  # the output kind ``overwrite`` may replace at ``out``
    # a YAML file inside the package, read when no --config is given
    default_config: Optional[str] = None


COMMANDS: dict[str, Command] = {
    "import": Command(
        schema.ImportConfig,
        "minitron.recipes.import_hf",
        "HF, Megatron-LM, Megatron-Bridge or NeMo 2 checkpoint -> megatron-core "
        "checkpoint (any TP/PP)",
        (
            ("--hf", "hf", "value"),
            ("--megatron", "megatron", "value"),
            ("--tokenizer", "tokenizer", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--dtype", "dtype", "value"),
            ("--overwrite", "overwrite", "true"),
        ),
        replaces="checkpoint",
    ),
    "export": Command(
        schema.ExportConfig,
        "minitron.recipes.export",
        "checkpoint (any saved layout) -> HF directory, TensorRT-LLM or Megatron-LM checkpoint",
        (
            ("--ckpt", "ckpt", "value"),
            ("--format", "format", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--dtype", "dtype", "value"),
            ("--overwrite", "overwrite", "true"),
        ),
        replaces="export",
    ),
    "params": Command(
        schema.ParamsConfig,
        "minitron.recipes.params",
        "exact total / non-embedding parameter counts of a HF config",
        (("--hf-config", "hf_config", "value"), ("--json", "json", "true")),
    ),
    "data prepare": Command(
        schema.PrepareConfig,
        "minitron.recipes.prepare",
        "tokenize corpora into megatron-core indexed datasets",
        (
            ("--input", "inputs", "append"),
            ("--tokenizer", "tokenizer", "value"),
            ("--out", "out", "value"),
            ("--overwrite", "overwrite", "true"),
        ),
    ),
    "loss": Command(
        schema.LossConfig,
        "minitron.recipes.loss",
        "held-out LM loss of a model (any TP/PP)",
        (("--model", "model", "value"), ("--tp", "tp", "value"), ("--pp", "pp", "value")),
    ),
    "eval": Command(
        schema.EvalConfig,
        "minitron.recipes.evaluate",
        "LM loss and multiple-choice accuracy (Winogrande, jsonl tasks), any TP/PP",
        (
            ("--model", "model", "value"),
            ("--task", "tasks", "task"),
            ("--limit", "limit", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--out", "out", "value"),
        ),
    ),
    "generate": Command(
        generate.GenerateConfig,
        "minitron.recipes.generate",
        "completions on megatron-core's inference engine (greedy or sampled, "
        "stop strings, chat templates), any TP/PP, resumable",
        (
            ("--model", "model", "value"),
            ("--prompt", "prompt", "value"),
            ("--input", "input", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
        ),
    ),
    "lm-eval": Command(
        schema.LmEvalConfig,
        "minitron.recipes.lm_eval",
        "lm-evaluation-harness tasks on a minitron model (needs lm-eval)",
        (
            ("--model", "model", "value"),
            ("--tasks", "tasks", "csv"),
            ("--include-path", "include_path", "value"),
            ("--num-fewshot", "num_fewshot", "value"),
            ("--limit", "limit", "value"),
            ("--apply_chat_template", "apply_chat_template", "true"),
            ("--apply-chat-template", "apply_chat_template", "true"),
            ("--fewshot_as_multiturn", "fewshot_as_multiturn", "true"),
            ("--confirm_run_unsafe_code", "confirm_run_unsafe_code", "true"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--out", "out", "value"),
        ),
    ),
    "score": Command(
        prune.ScoreConfig,
        "minitron.recipes.score",
        "importance of heads, neurons, channels and layers on calibration data",
        (
            ("--model", "model", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
        ),
        replaces="scores",
    ),
    "prune": Command(
        prune.PruneConfig,
        "minitron.recipes.prune",
        "width and depth pruning to a target architecture, any TP/PP",
        (
            ("--model", "model", "value"),
            ("--scores", "scores", "value"),
            ("--out", "out", "value"),
            ("--dry-run", "dry_run", "true"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--overwrite", "overwrite", "true"),
        ),
        replaces="checkpoint",
    ),
    "correct": Command(
        train.CorrectConfig,
        "minitron.recipes.correct",
        "teacher correction: light fine-tune on the distillation data (full, LoRA, "
        "norm-only), resumable",
        (
            ("--model", "model", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--dry-run", "dry_run", "true"),
        ),
    ),
    "distill": Command(
        train.DistillConfig,
        "minitron.recipes.distill",
        "logit KL distillation of a student from a teacher, any TP/PP, resumable",
        (
            ("--student", "students", "append"),
            ("--teacher", "teacher", "value"),
            ("--out", "out", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--dry-run", "dry_run", "true"),
        ),
    ),
    "align": Command(
        align.AlignConfig,
        "minitron.recipes.align",
        "alignment: SFT, DPO, IPO or RPO (rounds), any TP/PP, resumable",
        (
            ("--model", "model", "value"),
            ("--out", "out", "value"),
            ("--data", "data", "value"),
            ("--algorithm", "algorithm", "value"),
            ("--tp", "tp", "value"),
            ("--pp", "pp", "value"),
            ("--dry-run", "dry_run", "true"),
        ),
    ),
    "bench": Command(
        schema.BenchConfig,
        "minitron.recipes.bench",
        "prefill/decode throughput of several models side by side, with a chart",
        (("--out", "out", "value"),),
    ),
    "run": Command(
        run.RunConfig,
        "minitron.pipeline.run",
        "the whole pipeline in one experiment directory, resumable (default: SmolLM2)",
        (("--workdir", "workdir", "value"), ("--dry-run", "dry_run", "true")),
        default_config="data/embedded_run.yaml",  # examples/smollm2/run.yaml
    ),
    "search": Command(
        search.SearchConfig,
        "minitron.recipes.search",
        "architectures under a parameter budget, ranked after a short distillation each",
        (
            ("--model", "model", "value"),
            ("--scores", "scores", "value"),
            ("--out", "out", "value"),
            ("--shard", "shard", "value"),
            ("--dry-run", "dry_run", "true"),
            ("--collect", "collect", "true"),
        ),
    ),
    "demo": Command(
        schema.DemoConfig,
        "minitron.recipes.demo",
        "the embedded default: import SmolLM2, prepare the corpora, held-out loss",
    ),
}
