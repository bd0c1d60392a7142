"""Config of ``minitron run``: the whole pipeline in one file. The defaults are the
embedded default (SmolLM2-135M on the built-in corpora, sized for 2 CPU cores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from minitron.choices import BATCH_AGG, SEQ_AGG
from minitron.config.checks import choice, positive
from minitron.config.loader import doc
from minitron.config.prune import WIDTH_METHODS, DepthConfig, TargetConfig
from minitron.config.schema import MCTaskConfig, check_split
from minitron.config.train import DistillLossConfig, OptimConfig, ScheduleConfig, TrainingBase
from minitron.errors import ConfigError

STAGES = (
    "import",
    "prepare",
    "correct",
    "score",
    "prune",
    "distill",
    "align",
    "eval",
    "export",
    "bench",
    "report",
)


@dataclass
class RunDataConfig:
    """The distillation data: prepared once into <workdir>/data."""

    inputs: List[str] = doc(
        factory=lambda: ["builtin:wiki", "builtin:news", "builtin:shakespeare"],
        text="Files or builtin:NAME corpora (checked before the first stage "
        "when prepare will run).",
    )
    eod_token: Optional[str] = doc(
        "<|endoftext|>",
        "Document separator (default: SmolLM2's); must be a token of the model's tokenizer.",
    )
    seq_length: int = doc(256, "Tokens per training / held-out sample.")
    split: str = doc(
        "96,2,2",
        "Train, validation, test shares of the documents. Training reads "
        "the train share; the depth search and validation during training the "
        "validation share; the eval stage's held-out loss the test share (the "
        "validation share when the test share is 0). Train and validation must "
        "not be 0.",
    )


@dataclass
class RunCorrectConfig:
    """Teacher correction before pruning (the paper's recipe; off by default on CPU)."""

    enabled: bool = doc(False, "Correct the teacher on the data first.")
    mode: str = doc("full", "full, lora or norm.")
    optim: OptimConfig = doc(
        factory=lambda: OptimConfig(lr=6e-5, min_lr=6e-6, warmup_steps=5),
        text="A fifth of the distillation peak LR (paper).",
    )
    schedule: ScheduleConfig = doc(
        factory=lambda: ScheduleConfig(steps=40, global_batch_size=4, micro_batch_size=4),
        text="Correction length.",
    )


@dataclass
class RunScoreConfig:
    """Importance estimation on calibration samples of the training split."""

    num_samples: int = doc(64, "Calibration samples, >= 1 (paper: 1024).")
    micro_batch_size: int = doc(4, "Samples per forward, >= 1.")
    seq_aggregation: str = doc("mean", "mean, l2 or max.")
    batch_aggregation: str = doc("l2", "l2, mean or max.")

    def validate(self):
        positive(self.num_samples, "num_samples")
        positive(self.micro_batch_size, "micro_batch_size")
        choice(self.seq_aggregation, SEQ_AGG, "seq_aggregation")
        choice(self.batch_aggregation, BATCH_AGG, "batch_aggregation")


@dataclass
class StudentConfig:
    """One pruned student: its target and how it is chosen."""

    name: str = doc("width", "Name (a directory name in the run).")
    target: TargetConfig = doc(factory=TargetConfig, text="The pruned architecture.")
    width_method: str = doc("activation", "activation, magnitude or random.")
    depth: DepthConfig = doc(
        factory=DepthConfig, text="Depth selection, when the target drops layers."
    )

    def validate(self):
        choice(self.width_method, WIDTH_METHODS, "width_method")
        if not self.target.sizes():
            raise ConfigError("target", "set at least one size")


def _default_students():
    # width keeps every attention head and 75% of the hidden size, as the paper's Llama 3.1
    # width student does (Table 3); hidden stays a multiple of the 9 heads (transformers' check)
    return [
        StudentConfig(name="width", target=TargetConfig(hidden_size=432, ffn_hidden_size=832)),
        StudentConfig(
            name="depth", target=TargetConfig(num_layers=15), depth=DepthConfig(criterion="lm_loss")
        ),
    ]


@dataclass
class RunDistillConfig:
    """Distillation of every student from the (corrected) teacher."""

    loss: DistillLossConfig = doc(
        factory=DistillLossConfig, text="The KD loss (paper: forward KL)."
    )
    optim: OptimConfig = doc(
        factory=lambda: OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=5),
        text="Student optimizer (the embedded default's learning rate was "
        "chosen on validation loss: docs/benchmarks.md).",
    )
    schedule: ScheduleConfig = doc(
        factory=lambda: ScheduleConfig(
            steps=80, global_batch_size=4, micro_batch_size=4, eval_every=40, save_every=20
        ),
        text="Steps and batch sizes (the token budget).",
    )
    together: bool = doc(
        True,
        "Distil all students in one run that computes the teacher's "
        "forward once per micro-batch for all of them (distill/final/<name>); "
        "false: one run per student (distill/<name>/final/student), which needs "
        "memory for one student at a time only.",
    )


@dataclass
class RunAlignConfig:
    """Alignment of every distilled student (off by default)."""

    enabled: bool = doc(False, "SFT then preference optimisation after distillation.")
    sft_data: str = doc("builtin:sft", "SFT rows: builtin:sft or a jsonl of {prompt, response}.")
    preference_data: str = doc(
        "builtin:preferences",
        "Preference rows: builtin:preferences or a jsonl of {prompt, chosen, rejected}.",
    )
    algorithm: str = doc("rpo", "dpo, ipo or rpo (after SFT).")
    rounds: int = doc(2, "Preference rounds (paper: two of RPO).")
    sft_steps: int = doc(40, "Optimizer steps of the SFT stage.")
    preference_steps: int = doc(40, "Steps per preference round.")


@dataclass
class RunEvalConfig:
    """Evaluation of the teacher, the pruned students and the final students."""

    tasks: List[MCTaskConfig] = doc(
        factory=lambda: [MCTaskConfig(limit=300, seed=42)],
        text="Multiple-choice tasks (default: 300 Winogrande items).",
    )
    loss_samples: int = doc(16, "Held-out windows for the LM loss, >= 1.")
    instructions: str = doc(
        "auto",
        "The built-in instruction-following set (ifeval_mini, scored "
        "by lm-eval's IFEval checkers, prompts in each model's chat "
        "template) on the teacher, the distilled and the aligned students: "
        "auto (when align is enabled), always or never. Needs lm-eval.",
    )
    instructions_limit: Optional[int] = doc(None, "Prompts of that set to use (default: all 135).")
    instructions_max_tokens: int = doc(256, "Most new tokens per prompt of that set.")

    def validate(self):
        choice(self.instructions, ("auto", "always", "never"), "instructions")
        positive(self.instructions_max_tokens, "instructions_max_tokens")
        if self.instructions_limit is not None:
            positive(self.instructions_limit, "instructions_limit")


@dataclass
class RunExportConfig:
    """Deployable copies of the final students."""

    formats: List[str] = doc(
        factory=lambda: ["hf"],
        text="Export formats: hf, trtllm and/or megatron (Megatron-LM / Megatron-Bridge).",
    )
    trtllm_tp: int = doc(1, "Ranks of the TensorRT-LLM checkpoint, >= 1.")


@dataclass
class RunBenchConfig:
    """Throughput of the teacher and the final students."""

    enabled: bool = doc(True, "Run the throughput benchmark stage.")
    backends: List[str] = doc(
        factory=lambda: ["auto"],
        text="transformers, vllm, trtllm or auto "
        "(one named explicitly must be installed; checked at load when "
        "enabled).",
    )
    batch_sizes: List[int] = doc(factory=lambda: [1, 4], text="Batch sizes to measure (each >= 1).")
    prompt_length: int = doc(64, "Prompt tokens (prefill length), >= 1.")
    decode_tokens: int = doc(16, "Generated tokens (decode length), >= 1.")
    repeats: int = doc(2, "Timed repetitions after a warm-up, >= 1.")

    def validate(self):
        from minitron.config.schema import check_backends

        if not self.enabled:
            return
        check_backends(self.backends, "backends")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError("batch_sizes", f"{list(self.batch_sizes)}: give batch sizes >= 1")
        for f in ("prompt_length", "decode_tokens", "repeats"):
            positive(getattr(self, f), f)


@dataclass
class RunConfig(TrainingBase):
    """``minitron run``: import -> (correct) -> score -> prune -> distill -> (align) -> eval ->
    export -> bench -> report, in one experiment directory, resumable."""

    model: str = doc(
        "smollm2-135m",
        "The teacher: HF directory, Hub id, embedded name, or a "
        "Megatron-LM / Megatron-Bridge / NeMo 2 checkpoint directory (imported "
        "into the experiment directory).",
    )
    tokenizer: str = doc(
        "",
        "The teacher's HF tokenizer (directory or Hub id), for a Megatron "
        "checkpoint that carries none; empty: the one found with it.",
    )
    workdir: str = doc("runs/smollm2-default", "The experiment directory.")
    stages: Optional[List[str]] = doc(None, "Run only these stages (their inputs must exist).")
    data: RunDataConfig = doc(factory=RunDataConfig, text="Data.")
    correct: RunCorrectConfig = doc(factory=RunCorrectConfig, text="Teacher correction.")
    score: RunScoreConfig = doc(factory=RunScoreConfig, text="Importance estimation.")
    students: List[StudentConfig] = doc(factory=_default_students, text="The students to make.")
    distill: RunDistillConfig = doc(factory=RunDistillConfig, text="Distillation.")
    align: RunAlignConfig = doc(factory=RunAlignConfig, text="Alignment.")
    eval: RunEvalConfig = doc(factory=RunEvalConfig, text="Evaluation.")
    export: RunExportConfig = doc(factory=RunExportConfig, text="Export.")
    bench: RunBenchConfig = doc(factory=RunBenchConfig, text="Throughput benchmark.")

    def evaluates_instructions(self) -> bool:
        """Whether the eval stage runs the instruction-following set."""
        mode = self.eval.instructions
        return mode == "always" or (mode == "auto" and self.align.enabled)

    def validate(self):
        super().validate()
        for s in self.stages or []:
            choice(s, STAGES, "stages")
        if self.tokenizer:
            from minitron.config.schema import is_megatron_source

            if not is_megatron_source(self.model):
                raise ConfigError(
                    "tokenizer",
                    "is for a Megatron-family model; an HF model "
                    "brings its own tokenizer (leave tokenizer empty)",
                )
        names = [s.name for s in self.students]
        if not names:
            raise ConfigError("students", "give at least one student")
        if len(set(names)) != len(names):
            raise ConfigError("students", f"names must be unique: {names}")
        for f in self.export.formats:
            choice(f, ("hf", "trtllm", "megatron"), "export.formats")
        if self.evaluates_instructions():
            try:
                import langdetect  # noqa: F401
                import lm_eval  # noqa: F401
            except Exception:
                raise ConfigError(
                    "eval.instructions",
                    "the instruction-following evaluation "
                    "needs lm-eval with its IFEval scorer: pip install -e '.[lm-eval]'"
                    ", or set eval.instructions=never",
                ) from None
        positive(self.export.trtllm_tp, "export.trtllm_tp")
        positive(self.eval.loss_samples, "eval.loss_samples")
        positive(self.data.seq_length, "data.seq_length")
        train, valid, _ = check_split(self.data.split, "data.split")
        if train <= 0 or valid <= 0:
            raise ConfigError(
                "data.split",
                f"{self.data.split!r}: the run trains on the first share "
                "and measures held-out loss on the second; give both a share, e.g. "
                "98,2,0",
            )
        choice(self.align.algorithm, ("dpo", "ipo", "rpo"), "align.algorithm")
