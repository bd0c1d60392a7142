"""Configs of the training stages: teacher correction (``minitron correct``) and
distillation (``minitron distill``). Defaults follow the paper's Table 4 where it
gives a value (peak LR 1e-4, cosine decay, warm-up, teacher correction at a fifth
of the peak LR with 120 warm-up steps); sizes default to the embedded model's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

from minitron.config.checks import DTYPE_CHOICES, choice, layout, number, positive
from minitron.config.loader import REQUIRED, doc
from minitron.config.schema import DataConfig, LossTaskConfig, MCTaskConfig
from minitron.errors import ConfigError

CORRECTION_MODES = ("full", "lora", "norm")
RECOMPUTE_CHOICES = ("none", "selective", "full")


@dataclass
class TrainingBase:
    """Layout, precision and megatron-core engine options shared by every training stage
    (``correct``, ``distill``, ``align``) and by ``minitron run``, which passes them on."""

    tp: int = doc(1, "Tensor-parallel size (every model of the stage).")
    pp: int = doc(1, "Pipeline-parallel size (every model of the stage).")
    dtype: str = doc(
        "float32",
        "Parameter dtype: float32, or bfloat16 / float16 with fp32 main "
        "weights, gradients and Adam moments in the optimizer (use bfloat16 on GPU).",
    )
    sequence_parallel: bool = doc(
        False,
        "Megatron sequence parallelism: norms, dropout and "
        "residuals split along the sequence over the TP ranks (needs "
        "tp > 1); the teacher and the reference use it too.",
    )
    recompute: str = doc(
        "none",
        "Activation recomputation of trained models: none, selective "
        "(core attention; cheap) or full (whole layers, recompute_num_layers at "
        "a time; least memory).",
    )
    recompute_num_layers: int = doc(1, "recompute=full: layers per recomputed block (uniform).")
    use_distributed_optimizer: Optional[bool] = doc(
        None,
        "Shard the optimizer state and the fp32 "
        "main weights over data-parallel ranks "
        "(default: on when data-parallel size > 1).",
    )
    grad_reduce_in_fp32: bool = doc(True, "Accumulate and reduce gradients in fp32 buffers.")
    overlap_grad_reduce: bool = doc(
        True,
        "Overlap the data-parallel gradient reduction with the "
        "backward pass (GPU; on CPU the reduction runs after it).",
    )
    max_skipped_steps: int = doc(
        10,
        "Stop after this many optimizer steps in a row skipped for "
        "a non-finite gradient norm (naming the last good checkpoint).",
    )
    dp: Optional[int] = doc(
        None,
        "Data-parallel size the --dry-run memory plan assumes (default: "
        "this launch's processes / (tp x pp)); a real run takes it from the "
        "launch.",
    )
    gpu_memory_gb: float = doc(
        80.0, "Memory per GPU that the --dry-run memory plan must fit in (an H100: 80)."
    )
    flops_per_second: float = doc(
        1.6e11,
        "Sustained FLOP/s of the whole job (all GPUs together) "
        "assumed by --dry-run's time estimates (about 2 CPU cores; one "
        "H100 is ~4e14 in bf16).",
    )
    dry_run: bool = doc(
        False, "Print the memory plan per GPU and the estimated step time, then stop."
    )
    overwrite: bool = doc(
        False,
        "Start over: remove the checkpoints, final models and "
        "metrics an earlier run left in ``out`` (a run rerun with other "
        "settings is refused without it).",
    )
    tensorboard: bool = doc(True, "Also log to TensorBoard (when installed).")
    progress: bool = doc(True, "Progress bar (rank 0).")

    def validate(self):
        layout(self)
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        choice(self.recompute, RECOMPUTE_CHOICES, "recompute")
        positive(self.recompute_num_layers, "recompute_num_layers")
        positive(self.max_skipped_steps, "max_skipped_steps")
        if self.sequence_parallel and self.tp < 2:
            raise ConfigError(
                "sequence_parallel",
                "needs tp > 1 (it splits the sequence over the "
                "tensor-parallel ranks); set tp=2 or more, or sequence_parallel=false",
            )
        if self.dp is not None:
            positive(self.dp, "dp")
        if self.gpu_memory_gb <= 0:
            raise ConfigError("gpu_memory_gb", "must be > 0")
        if self.flops_per_second <= 0:
            raise ConfigError("flops_per_second", "must be > 0")

    def training_values(self, **changes) -> dict:
        """This config's TrainingBase fields (to build another stage's config from them)."""
        import dataclasses

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingBase)}
        out.update(changes)
        return out


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``min_lr``. Ranges are checked at load."""

    lr: float = doc(1e-4, "Peak learning rate, > 0 (paper: 1e-4).")
    min_lr: float = doc(
        1e-5, "Final learning rate of the cosine decay, between 0 and lr (paper, Llama: 1e-5)."
    )
    warmup_steps: int = doc(40, "Linear warm-up steps, >= 0 (paper, Llama: 40).")
    weight_decay: float = doc(0.1, "AdamW weight decay on matrices (not on norms), >= 0.")
    beta1: float = doc(0.9, "AdamW beta1, in [0, 1).")
    beta2: float = doc(0.95, "AdamW beta2, in [0, 1).")
    eps: float = doc(1e-8, "AdamW epsilon, > 0.")
    clip_grad: float = doc(1.0, "Clip the global gradient norm to this, >= 0 (0: no clipping).")

    def validate(self):
        number(self.lr, "lr", gt=0, hint="the peak learning rate, e.g. 1e-4")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise ConfigError("min_lr", f"must be between 0 and lr={self.lr}, got {self.min_lr}")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        number(self.weight_decay, "weight_decay", ge=0, hint="0: no weight decay")
        number(self.beta1, "beta1", ge=0, lt=1, hint="Adam's first-moment decay; usually 0.9")
        number(
            self.beta2,
            "beta2",
            ge=0,
            lt=1,
            hint="Adam's second-moment decay; usually 0.95 to 0.999",
        )
        number(self.eps, "eps", gt=0, hint="usually 1e-8")
        number(self.clip_grad, "clip_grad", ge=0, hint="0: no clipping")


@dataclass
class ScheduleConfig:
    """How long, how big, how often."""

    steps: int = doc(100, "Optimizer steps.")
    global_batch_size: int = doc(
        8, "Samples per optimizer step (micro-batches x accumulation x data-parallel size)."
    )
    micro_batch_size: int = doc(2, "Samples per forward/backward.")
    log_every: int = doc(1, "Log training metrics every N steps.")
    eval_every: int = doc(0, "Validate every N steps, >= 0 (0: only at the end).")
    save_every: int = doc(50, "Checkpoint every N steps (the run resumes from the latest).")
    keep_last: int = doc(2, "Checkpoints kept.")
    seed: int = doc(1234, "Seed of the run's RNG.")

    def validate(self):
        for f in (
            "steps",
            "global_batch_size",
            "micro_batch_size",
            "log_every",
            "save_every",
            "keep_last",
        ):
            positive(getattr(self, f), f)
        if self.eval_every < 0:
            raise ConfigError(
                "eval_every", f"must be >= 0 (0: only at the end), got {self.eval_every}"
            )
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                "global_batch_size",
                f"{self.global_batch_size} is not a multiple of "
                f"micro_batch_size={self.micro_batch_size}",
            )


@dataclass
class ValidationConfig:
    """What is measured during and after training."""

    loss: Optional[LossTaskConfig] = doc(
        None, "Held-out LM loss (default: the training data's valid split, 16 samples)."
    )
    task: Optional[MCTaskConfig] = doc(
        None, "A multiple-choice task, e.g. Winogrande with a limit."
    )


@dataclass
class DistillLossConfig:
    """The distillation objective (paper: forward KL on logits, no cross entropy)."""

    kind: str = doc("forward_kl", "forward_kl, reverse_kl, jsd or topk_kl.")
    temperature: float = doc(1.0, "Softmax temperature, > 0 (the loss is scaled by T^2).")
    beta: float = doc(
        0.5, "JSD mixing weight of the teacher, in (0, 1) (at 0 or 1 the JSD is zero)."
    )
    topk: int = doc(0, "k for topk_kl, >= 1 and at most the vocabulary (0 for the other kinds).")
    ce_weight: float = doc(
        0.0, "Weight of an added cross-entropy loss on the labels, >= 0 (paper: 0)."
    )
    chunk_size: int = doc(4096, "Tokens per chunk of the loss (bounds its fp32 memory).")

    def validate(self):
        from minitron.choices import DISTILL_LOSSES

        choice(self.kind, DISTILL_LOSSES, "kind")
        number(self.temperature, "temperature", gt=0)
        number(
            self.beta,
            "beta",
            gt=0,
            lt=1,
            hint="the teacher's weight in the JSD mixture; 0.5 is the symmetric JSD",
        )
        if self.kind == "topk_kl":
            positive(self.topk, "topk")
        elif self.topk != 0:
            raise ConfigError(
                "topk",
                f"applies to kind=topk_kl only (kind is {self.kind}); set "
                "kind=topk_kl or leave topk at 0",
            )
        number(self.ce_weight, "ce_weight", ge=0, hint="0: no cross-entropy term")
        positive(self.chunk_size, "chunk_size")


@dataclass
class CorrectConfig(TrainingBase):
    """``minitron correct``: teacher correction, a light fine-tune on the distillation data."""

    model: str = doc(REQUIRED, "The teacher: a minitron checkpoint or HF source.")
    out: str = doc(REQUIRED, "Run directory (checkpoints, metrics.csv, tensorboard/, final/).")
    data: DataConfig = doc(factory=DataConfig, text="The distillation data (train split).")
    mode: str = doc(
        "full",
        "full (every weight), lora (low-rank adapters, merged at the end) or "
        "norm (RMSNorm weights only): the paper's suggested lighter variants.",
    )
    lora_rank: int = doc(16, "LoRA rank r of the adapters.")
    lora_alpha: float = doc(32.0, "LoRA alpha (scale alpha / rank), > 0.")
    optim: OptimConfig = doc(
        factory=lambda: OptimConfig(lr=2e-5, min_lr=2e-6, warmup_steps=120),
        text="Paper: one fifth of the peak LR, 120 warm-up steps.",
    )
    schedule: ScheduleConfig = doc(factory=ScheduleConfig, text="Steps, batch sizes, intervals.")
    validation: ValidationConfig = doc(factory=ValidationConfig, text="Validation.")

    def validate(self):
        super().validate()
        check_out(self.out)
        check_splits(self.data, self.validation)
        choice(self.mode, CORRECTION_MODES, "mode")
        positive(self.lora_rank, "lora_rank")
        number(self.lora_alpha, "lora_alpha", gt=0, hint="at 0 the adapters change nothing")


@dataclass
class DistillConfig(TrainingBase):
    """``minitron distill``: logit distillation of a (pruned) student from a teacher."""

    student: str = doc(
        "",
        "The student: a minitron checkpoint (e.g. from `minitron prune`); the "
        "result is ``<out>/final/student``. Give ``student`` or ``students``.",
    )
    students: List[str] = doc(
        factory=list,
        text="Several students distilled together from one "
        "teacher forward per micro-batch (each with its own optimizer, "
        "schedule and checkpoints); results ``<out>/final/<name>``. "
        "``--student A --student B`` on the command line.",
    )
    names: List[str] = doc(
        factory=list,
        text="Names of ``students`` (their final directories "
        "and metric suffixes); default: each student directory's name.",
    )
    teacher: str = doc(REQUIRED, "The (corrected) teacher: a checkpoint or HF source.")
    out: str = doc(REQUIRED, "Run directory (checkpoints, metrics.csv, tensorboard/, final/).")
    data: DataConfig = doc(factory=DataConfig, text="The distillation data (train split).")
    loss: DistillLossConfig = doc(factory=DistillLossConfig, text="The distillation loss.")
    optim: OptimConfig = doc(factory=OptimConfig, text="Student optimizer (paper, Table 4).")
    schedule: ScheduleConfig = doc(factory=ScheduleConfig, text="Steps, batch sizes, intervals.")
    validation: ValidationConfig = doc(factory=ValidationConfig, text="Validation.")
    parallel_correction: bool = doc(
        False,
        "Also train the teacher on the same batches with the LM "
        "loss while the student distils from it (paper, Figure 5).",
    )
    teacher_optim: OptimConfig = doc(
        factory=lambda: OptimConfig(lr=2e-5, min_lr=2e-6, warmup_steps=120),
        text="Teacher optimizer for parallel_correction.",
    )

    def validate(self):
        super().validate()
        check_out(self.out)
        check_splits(self.data, self.validation)
        if len(self.students) == 1 and not self.student and not self.names:
            self.student, self.students = self.students[0], []  # one student: the usual run
        if bool(self.student) == bool(self.students):
            raise ConfigError(
                "student",
                "give one student (student=DIR) or several "
                "(students=[DIR, DIR] / --student A --student B), not both or none",
            )
        names = self.student_names()
        if len(set(names)) != len(names):
            raise ConfigError(
                "names",
                f"{names}: the students need distinct names; set names="
                "[...] (the default takes each directory's name)",
            )
        for n in names:
            if n in ("teacher", "") or "/" in n or n.startswith("."):
                raise ConfigError(
                    "names",
                    f"{n!r} cannot name a student (it names a directory "
                    "under final/; 'teacher' is the teacher's)",
                )

    def student_specs(self) -> list[str]:
        return self.students or [self.student]

    def student_names(self) -> list[str]:
        """``student`` for the single-student run; else ``names`` or the directories' names."""
        from pathlib import Path

        if not self.students:
            return ["student"]
        if self.names:
            if len(self.names) != len(self.students):
                raise ConfigError(
                    "names", f"{len(self.names)} names for {len(self.students)} students"
                )
            return list(self.names)
        return [Path(s.rstrip("/")).name for s in self.students]


def check_splits(data: DataConfig, validation: ValidationConfig) -> None:
    """Training reads the train share; validation without its own data reads the valid share."""
    from minitron.config.schema import check_split

    train, valid, _ = check_split(data.split, "data.split")
    if train <= 0:
        raise ConfigError(
            "data.split",
            f"{data.split!r} gives training no documents; give the "
            "first share a value, e.g. 98,2,0",
        )
    if valid <= 0 and validation.loss is None:
        raise ConfigError(
            "data.split",
            f"{data.split!r} leaves validation no documents; give the "
            "second share a value, or set validation.loss to other data",
        )


def check_out(out: str) -> None:
    """A run directory may exist (it resumes); a file in its place may not."""
    from pathlib import Path

    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError("out", f"{out} is a file; give a directory for the run")
