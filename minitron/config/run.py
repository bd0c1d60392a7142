"""Config of ``minitron run``: the whole pipeline in one file.

Each stage's section is that stage's own config (``minitron correct``, ``score``, ``prune``,
``distill``, ``align``, ``eval``, ``lm-eval``, ``export``, ``bench``) less the fields the run
sets itself (``config/sections.py``), so every hyperparameter of every stage is a key here,
with the stage's default. The embedded default's own choices (SmolLM2-135M, its students,
its learning rate and token budget) are in ``examples/smollm2/run.yaml``, which
``minitron run`` reads when no ``--config`` is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional

from minitron.config.align import AlignConfig
from minitron.config.checks import DTYPE_CHOICES, choice, positive
from minitron.config.loader import REQUIRED, doc
from minitron.config.owned import LAYOUT, PLACEHOLDER_DATA, RUN_TRAINING, TRAINED
from minitron.config.prune import PruneConfig, ScoreConfig
from minitron.config.schema import (
    BenchConfig,
    BenchModelConfig,
    EvalConfig,
    ExportConfig,
    LmEvalConfig,
    LossTaskConfig,
    PrepareConfig,
    check_split,
)
from minitron.config.search import SearchConfig, SearchDistillConfig
from minitron.config.sections import check_as_stage, section
from minitron.config.train import CorrectConfig, DistillConfig, TrainingBase
from minitron.errors import ConfigError

EXPORT_FORMATS = ("hf", "trtllm", "megatron")
STAGES = (
    "import",
    "prepare",
    "correct",
    "score",
    "search",
    "prune",
    "distill",
    "align",
    "eval",
    "export",
    "bench",
    "report",
)


# Each section below is declared as a subclass of its stage's config so that a type checker
# sees the stage's fields; @section replaces it with the stage's fields less the owned ones,
# plus the fields declared here (config/sections.py).


@section(
    PrepareConfig,
    owned={
        "tokenizer": "the imported teacher's",
        "out": "<workdir>/data",
        "overwrite": "false",
        # checked when prepare will run (``pipeline/run.py``): a finished run needs no corpus
        "inputs": "data.inputs, below",
    },
    placeholders={"tokenizer": "<teacher>", "out": "<workdir>/data", "inputs": ["builtin:wiki"]},
)
class RunDataConfig(PrepareConfig):
    """The distillation data: prepared once into <workdir>/data (``minitron data prepare``),
    then cut into samples for every stage."""

    inputs: List[str] = doc(
        factory=list,
        text="Files or builtin:NAME corpora, at least one (checked before the first stage "
        "when prepare will run).",
    )
    seq_length: int = doc(512, "Tokens per training / held-out sample.")
    split: str = doc(
        "96,2,2",
        "Train, validation, test shares of the documents. Training reads the train share; "
        "the depth search and validation during training the validation share; the eval "
        "stage's held-out loss the test share (the validation share when the test share is "
        "0). Train and validation must not be 0.",
    )
    heldout_samples: int = doc(
        8,
        "Held-out windows of the validation share for the depth search's LM loss and the "
        "validation during training, unless a stage sets its own.",
    )

    def validate_own(self):
        positive(self.seq_length, "seq_length")
        positive(self.heldout_samples, "heldout_samples")
        train, valid, _ = check_split(self.split, "split")
        if train <= 0 or valid <= 0:
            raise ConfigError(
                "split",
                f"{self.split!r}: the run trains on the first share and measures held-out "
                "loss on the second; give both a share, e.g. 98,2,0",
            )


@section(
    CorrectConfig,
    owned=RUN_TRAINING
    | {"model": "the imported teacher", "out": "<workdir>/correct", "data": "the run's data"},
    placeholders=TRAINED,
)
class RunCorrectConfig(CorrectConfig):
    """Teacher correction before pruning (``minitron correct``; off unless enabled)."""

    enabled: bool = doc(False, "Correct the teacher on the data first.")


@section(
    ScoreConfig,
    owned={
        "model": "the (corrected) teacher",
        "out": "<workdir>/scores",
        "data": "the run's data",
        **LAYOUT,
        "overwrite": "true",
        "progress": "false",
        "block_scores": "true when pp=1 (every contiguous block's Block Influence)",
    },
    placeholders=TRAINED,
)
class RunScoreConfig(ScoreConfig):
    """Importance estimation on calibration samples of the train share (``minitron score``)."""


PRUNED = {
    "model": "the (corrected) teacher",
    "scores": "<workdir>/scores",
    "tp": "the run's",
    "pp": "the run's",
    "dry_run": "false",
    "overwrite": "true",
    "progress": "false",
}


@section(
    SearchConfig,
    owned=RUN_TRAINING
    | {
        "model": "the (corrected) teacher",
        "scores": "<workdir>/scores",
        "out": "<workdir>/search/<name>",
        "data": "the run's data",
        "distill": "the run's distill section, with the steps and group_size below",
        "shard": "none (the run's ranks search together)",
        "collect": "false",
    },
    placeholders=TRAINED | {"scores": "<workdir>/scores", "distill": SearchDistillConfig()},
)
class RunSearchConfig(SearchConfig):
    """The architecture search that chooses a student (``minitron search``): every
    architecture inside the budget, pruned, scored zero-shot, the best ``top_k`` distilled
    for ``steps`` with the run's distillation settings, the winner kept."""

    steps: int = doc(
        100,
        "Distillation steps of every kept candidate (the run's distill section gives the "
        "rest: LR, batches, loss).",
    )
    group_size: int = doc(
        4,
        "Candidates distilled together, one teacher forward per micro-batch for all of them "
        "(bounds the memory of a group).",
    )

    def validate_own(self):
        positive(self.steps, "steps")
        positive(self.group_size, "group_size")


PRUNE_PLACEHOLDERS = {"model": "<teacher>", "out": "<workdir>/checkpoints/x", "scores": "<s>"}


@section(
    PruneConfig,
    owned=PRUNED | {"out": "<workdir>/checkpoints/<name>"},
    placeholders=PRUNE_PLACEHOLDERS,
)
class StudentConfig(PruneConfig):
    """One pruned student (``minitron prune``): its target and how it is chosen, or the
    search that chooses it."""

    name: str = doc(REQUIRED, "Name (a directory name in the run).")
    search: Optional[RunSearchConfig] = doc(
        None,
        "Choose the target by an architecture search instead (docs/search.md): the "
        "search's winner, pruned as the search pruned it, is this student. Leave target, "
        "width_method and depth unset (the search has its own).",
    )

    def validate(self):
        if self.search is None:
            check_as_stage(self, PRUNE_PLACEHOLDERS)
            return
        searched = {f.name for f in dataclasses.fields(SearchConfig)}
        default = PruneConfig(model="-", out="-")
        for f in dataclasses.fields(PruneConfig):
            if f.name in PRUNED or f.name == "out":
                continue
            if getattr(self, f.name) != getattr(default, f.name):
                fix = (
                    f"set search.{f.name} instead"
                    if f.name in searched
                    else "the search prunes every candidate with its default"
                )
                raise ConfigError(
                    f.name,
                    "a searched student is the search's winner, pruned as the search pruned "
                    f"every candidate: remove {f.name} here ({fix})",
                )


@section(
    DistillConfig,
    owned=RUN_TRAINING
    | {
        "student": "each student (together=false)",
        "students": "every student (together=true)",
        "names": "the students' names",
        "teacher": "the (corrected) teacher",
        "out": "<workdir>/distill",
        "data": "the run's data",
    },
    placeholders=TRAINED | {"student": "<student>", "teacher": "<teacher>"},
)
class RunDistillConfig(DistillConfig):
    """Distillation of every student from the (corrected) teacher (``minitron distill``).
    ``validation.loss`` unset: the held-out LM loss on data.heldout_samples windows."""

    together: bool = doc(
        True,
        "Distil all students in one run that computes the teacher's forward once per "
        "micro-batch for all of them (distill/final/<name>); false: one run per student "
        "(distill/<name>/final/student), which needs memory for one student at a time only.",
    )


ALIGN_OWNED = RUN_TRAINING | {
    "model": "the distilled student (SFT), the SFT model (preference)",
    "out": "<workdir>/align/<name>/{sft,pref}",
}


@section(
    AlignConfig,
    owned=ALIGN_OWNED | {"algorithm": "sft (this is the SFT stage)", "rounds": "1 (SFT runs once)"},
    defaults={"data": "builtin:sft"},
    placeholders={"model": "<student>", "out": "<workdir>/align/sft", "algorithm": "sft"},
)
class RunSFTConfig(AlignConfig):
    """Supervised fine-tuning of every distilled student (``minitron align algorithm=sft``)."""


@section(
    AlignConfig,
    owned=ALIGN_OWNED,
    defaults={"algorithm": "rpo", "data": "builtin:preferences", "rounds": 2},
    placeholders={"model": "<sft>", "out": "<workdir>/align/pref"},
)
class RunPreferenceConfig(AlignConfig):
    """Preference optimisation after SFT (``minitron align``; the paper: two rounds of RPO)."""

    def validate_own(self):
        choice(self.algorithm, ("dpo", "ipo", "rpo"), "algorithm")


@dataclass
class RunAlignConfig:
    """Alignment of every distilled student: SFT, then preference optimisation (off by default)."""

    enabled: bool = doc(False, "SFT then preference optimisation after distillation.")
    sft: RunSFTConfig = doc(factory=RunSFTConfig, text="The SFT stage.")
    preference: RunPreferenceConfig = doc(factory=RunPreferenceConfig, text="The preference stage.")


@section(
    LmEvalConfig,
    owned={
        "model": "each evaluated model",
        **LAYOUT,
        "out": "<workdir>/eval/<model>.ifeval.json",
        "samples": "none",
    },
    defaults={
        "tasks": ["ifeval_mini"],
        "apply_chat_template": True,
        "batch_size": 8,
        "gen_kwargs": "max_gen_toks=256",
    },
    placeholders={"model": "<model>"},
)
class RunInstructionsConfig(LmEvalConfig):
    """The instruction-following evaluation (``minitron lm-eval``; default: the built-in
    ifeval_mini set, prompts in each model's chat template, greedy)."""


@section(
    EvalConfig,
    owned={
        "model": "each evaluated model",
        "loss": "the held-out LM loss on loss_samples windows of the test share",
        "skip_layers": "none",
        **LAYOUT,
        "out": "<workdir>/eval/<model>.json",
        "progress": "false",
    },
    placeholders={
        "model": "<model>",
        "loss": [LossTaskConfig(name="heldout", data=PLACEHOLDER_DATA)],
    },
)
class RunEvalConfig(EvalConfig):
    """Evaluation of the teacher, the pruned and the final students (``minitron eval``)."""

    loss_samples: int = doc(16, "Held-out windows for the LM loss, >= 1.")
    instructions: str = doc(
        "auto",
        "The instruction-following evaluation (eval.lm_eval) on the teacher, the distilled "
        "and the aligned students: auto (when align is enabled), always or never. Needs "
        "lm-eval.",
    )
    lm_eval: RunInstructionsConfig = doc(factory=RunInstructionsConfig, text="That evaluation.")

    def validate_own(self):
        positive(self.loss_samples, "loss_samples")
        choice(self.instructions, ("auto", "always", "never"), "instructions")


@section(
    ExportConfig,
    owned={
        "ckpt": "each final student",
        "out": "<workdir>/export/<name>/<format>",
        "format": "each of formats",
        "overwrite": "true",
    },
)
class RunExportConfig(ExportConfig):
    """Deployable copies of the final students (``minitron export``, once per format)."""

    formats: List[str] = doc(
        factory=lambda: ["hf"],
        text="Export formats: hf, trtllm and/or megatron (Megatron-LM / Megatron-Bridge).",
    )

    def validate(self):
        # ExportConfig's own checks need the checkpoint on disk; these are its value checks
        for i, f in enumerate(self.formats):
            choice(f, EXPORT_FORMATS, f"formats[{i}]")
        positive(self.tp, "tp")
        choice(self.dtype, ("auto",) + DTYPE_CHOICES, "dtype")


@section(
    BenchConfig,
    owned={"models": "the teacher and the final students", "out": "<workdir>/bench"},
)
class RunBenchConfig(BenchConfig):
    """Throughput of the teacher and the final students (``minitron bench``)."""

    enabled: bool = doc(True, "Run the throughput benchmark stage.")

    def validate(self):
        if self.enabled:
            models = [BenchModelConfig(name="teacher", path="<teacher>")]
            check_as_stage(self, {"models": models, "out": "<workdir>/bench"})


@dataclass
class RunConfig(TrainingBase):
    """``minitron run``: import -> (correct) -> score -> (search) -> prune -> distill ->
    (align) -> eval -> export -> bench -> report, in one experiment directory, resumable."""

    model: str = doc(
        REQUIRED,
        "The teacher: HF directory, Hub id, embedded name, or a "
        "Megatron-LM / Megatron-Bridge / NeMo 2 checkpoint directory (imported "
        "into the experiment directory).",
    )
    tokenizer: str = doc(
        "",
        "The teacher's HF tokenizer (directory or Hub id), for a Megatron "
        "checkpoint that carries none; empty: the one found with it.",
    )
    workdir: str = doc(REQUIRED, "The experiment directory.")
    stages: Optional[List[str]] = doc(None, "Run only these stages (their inputs must exist).")
    data: RunDataConfig = doc(factory=RunDataConfig, text="Data.")
    correct: RunCorrectConfig = doc(factory=RunCorrectConfig, text="Teacher correction.")
    score: RunScoreConfig = doc(factory=RunScoreConfig, text="Importance estimation.")
    students: List[StudentConfig] = doc(factory=list, text="The students to make (at least one).")
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
