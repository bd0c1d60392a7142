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
from minitron.config.prune import PruneConfig, ScoreConfig
from minitron.config.schema import (
    BenchConfig,
    BenchModelConfig,
    DataConfig,
    EvalConfig,
    ExportConfig,
    LmEvalConfig,
    LossTaskConfig,
    PrepareConfig,
    check_split,
)
from minitron.config.sections import SECTIONS, field, section, stage_config
from minitron.config.train import CorrectConfig, DistillConfig, TrainingBase
from minitron.errors import ConfigError

EXPORT_FORMATS = ("hf", "trtllm", "megatron")
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


RUN_TRAINING = {f.name: "the run's top-level value" for f in dataclasses.fields(TrainingBase)} | {
    "dry_run": "false (the run's dry_run plans every stage)",
    "progress": "false",
}


def _section_validate(placeholders: dict):
    """A section's ``validate``: its stage config, built with ``placeholders`` for the fields
    the run sets, checked as the stage checks it (errors name the section's own keys)."""

    def validate(self):
        from minitron.config.loader import validate as check

        info = SECTIONS[type(self)]
        owned = {k: placeholders.get(k, _stage_default(info.stage, k)) for k in info.owned}
        check(stage_config(self, **owned))
        if hasattr(self, "validate_own"):
            self.validate_own()

    return validate


def _stage_default(stage: type, name: str):
    f = next(f for f in dataclasses.fields(stage) if f.name == name)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


PLACEHOLDER_DATA = DataConfig(paths=["<workdir>/data"])
TRAINED = {"model": "<checkpoint>", "out": "<workdir>/<stage>", "data": PLACEHOLDER_DATA}


def _validate_data(self):
    positive(self.seq_length, "seq_length")
    positive(self.heldout_samples, "heldout_samples")
    train, valid, _ = check_split(self.split, "split")
    if train <= 0 or valid <= 0:
        raise ConfigError(
            "split",
            f"{self.split!r}: the run trains on the first share and measures held-out loss "
            "on the second; give both a share, e.g. 98,2,0",
        )


RunDataConfig = section(
    PrepareConfig,
    "RunDataConfig",
    """The distillation data: prepared once into <workdir>/data (``minitron data prepare``),
    then cut into samples for every stage.""",
    owned={
        "tokenizer": "the imported teacher's",
        "out": "<workdir>/data",
        "overwrite": "false",
        # checked when prepare will run (``pipeline/run.py``): a finished run needs no corpus
        "inputs": "data.inputs",
    },
    extra=(
        (
            "inputs",
            List[str],
            field(
                factory=list,
                text="Files or builtin:NAME corpora, at least one (checked before the first "
                "stage when prepare will run).",
            ),
        ),
        ("seq_length", int, field(512, "Tokens per training / held-out sample.")),
        (
            "split",
            str,
            field(
                "96,2,2",
                "Train, validation, test shares of the documents. Training reads the train "
                "share; the depth search and validation during training the validation "
                "share; the eval stage's held-out loss the test share (the validation share "
                "when the test share is 0). Train and validation must not be 0.",
            ),
        ),
        (
            "heldout_samples",
            int,
            field(
                8,
                "Held-out windows of the validation share for the depth search's LM loss "
                "and the validation during training, unless a stage sets its own.",
            ),
        ),
    ),
    validate=_section_validate(
        {"tokenizer": "<teacher>", "out": "<workdir>/data", "inputs": ["builtin:wiki"]}
    ),
)
RunDataConfig.validate_own = _validate_data

RunCorrectConfig = section(
    CorrectConfig,
    "RunCorrectConfig",
    """Teacher correction before pruning (``minitron correct``; off unless enabled).""",
    owned=RUN_TRAINING
    | {"model": "the imported teacher", "out": "<workdir>/correct", "data": "the run's data"},
    extra=(("enabled", bool, field(False, "Correct the teacher on the data first.")),),
    validate=_section_validate(TRAINED),
)

RunScoreConfig = section(
    ScoreConfig,
    "RunScoreConfig",
    """Importance estimation on calibration samples of the train share (``minitron score``).""",
    owned={
        "model": "the (corrected) teacher",
        "out": "<workdir>/scores",
        "data": "the run's data",
        "tp": "the run's",
        "pp": "the run's",
        "dtype": "the run's",
        "overwrite": "true",
        "progress": "false",
        "block_scores": "true when pp=1 (every contiguous block's Block Influence)",
    },
    validate=_section_validate(TRAINED),
)

StudentConfig = section(
    PruneConfig,
    "StudentConfig",
    """One pruned student (``minitron prune``): its target and how it is chosen.""",
    owned={
        "model": "the (corrected) teacher",
        "out": "<workdir>/checkpoints/<name>",
        "scores": "<workdir>/scores",
        "tp": "the run's",
        "pp": "the run's",
        "dry_run": "false",
        "overwrite": "true",
        "progress": "false",
    },
    extra=(("name", str, field(REQUIRED, "Name (a directory name in the run).")),),
    validate=_section_validate(
        {"model": "<teacher>", "out": "<workdir>/checkpoints/x", "scores": "<workdir>/scores"}
    ),
)

RunDistillConfig = section(
    DistillConfig,
    "RunDistillConfig",
    """Distillation of every student from the (corrected) teacher (``minitron distill``).
    ``validation.loss`` unset: the held-out LM loss on data.heldout_samples windows.""",
    owned=RUN_TRAINING
    | {
        "student": "each student (together=false)",
        "students": "every student (together=true)",
        "names": "the students' names",
        "teacher": "the (corrected) teacher",
        "out": "<workdir>/distill",
        "data": "the run's data",
    },
    extra=(
        (
            "together",
            bool,
            field(
                True,
                "Distil all students in one run that computes the teacher's forward once "
                "per micro-batch for all of them (distill/final/<name>); false: one run per "
                "student (distill/<name>/final/student), which needs memory for one student "
                "at a time only.",
            ),
        ),
    ),
    validate=_section_validate(TRAINED | {"student": "<student>", "teacher": "<teacher>"}),
)

ALIGN_OWNED = RUN_TRAINING | {
    "model": "the distilled student (SFT), the SFT model (preference)",
    "out": "<workdir>/align/<name>/{sft,pref}",
}

RunSFTConfig = section(
    AlignConfig,
    "RunSFTConfig",
    """Supervised fine-tuning of every distilled student (``minitron align algorithm=sft``).""",
    owned=ALIGN_OWNED | {"algorithm": "sft (this is the SFT stage)", "rounds": "1 (SFT runs once)"},
    defaults={"data": "builtin:sft"},
    validate=_section_validate(
        {"model": "<student>", "out": "<workdir>/align/sft", "algorithm": "sft"}
    ),
)


def _validate_preference(self):
    choice(self.algorithm, ("dpo", "ipo", "rpo"), "algorithm")


RunPreferenceConfig = section(
    AlignConfig,
    "RunPreferenceConfig",
    """Preference optimisation after SFT (``minitron align``; the paper: two rounds of RPO).""",
    owned=ALIGN_OWNED,
    defaults={"algorithm": "rpo", "data": "builtin:preferences", "rounds": 2},
    validate=_section_validate({"model": "<sft>", "out": "<workdir>/align/pref"}),
)
RunPreferenceConfig.validate_own = _validate_preference


@dataclass
class RunAlignConfig:
    """Alignment of every distilled student: SFT, then preference optimisation (off by default)."""

    enabled: bool = doc(False, "SFT then preference optimisation after distillation.")
    sft: RunSFTConfig = doc(factory=RunSFTConfig, text="The SFT stage.")  # type: ignore[valid-type]
    preference: RunPreferenceConfig = doc(  # type: ignore[valid-type]
        factory=RunPreferenceConfig, text="The preference stage."
    )


RunInstructionsConfig = section(
    LmEvalConfig,
    "RunInstructionsConfig",
    """The instruction-following evaluation (``minitron lm-eval``; default: the built-in
    ifeval_mini set, prompts in each model's chat template, greedy).""",
    owned={
        "model": "each evaluated model",
        "tp": "the run's",
        "pp": "the run's",
        "dtype": "the run's",
        "out": "<workdir>/eval/<model>.ifeval.json",
        "samples": "none",
    },
    defaults={
        "tasks": ["ifeval_mini"],
        "apply_chat_template": True,
        "batch_size": 8,
        "gen_kwargs": "max_gen_toks=256",
    },
    validate=_section_validate({"model": "<model>"}),
)


def _validate_eval(self):
    positive(self.loss_samples, "loss_samples")
    choice(self.instructions, ("auto", "always", "never"), "instructions")


RunEvalConfig = section(
    EvalConfig,
    "RunEvalConfig",
    """Evaluation of the teacher, the pruned and the final students (``minitron eval``).""",
    owned={
        "model": "each evaluated model",
        "loss": "the held-out LM loss on loss_samples windows of the test share",
        "skip_layers": "none",
        "tp": "the run's",
        "pp": "the run's",
        "dtype": "the run's",
        "out": "<workdir>/eval/<model>.json",
        "progress": "false",
    },
    extra=(
        ("loss_samples", int, field(16, "Held-out windows for the LM loss, >= 1.")),
        (
            "instructions",
            str,
            field(
                "auto",
                "The instruction-following evaluation (eval.lm_eval) on the teacher, the "
                "distilled and the aligned students: auto (when align is enabled), always or "
                "never. Needs lm-eval.",
            ),
        ),
        (
            "lm_eval",
            RunInstructionsConfig,
            field(factory=RunInstructionsConfig, text="That evaluation."),
        ),
    ),
    validate=_section_validate(
        {"model": "<model>", "loss": [LossTaskConfig(name="heldout", data=PLACEHOLDER_DATA)]}
    ),
)
RunEvalConfig.validate_own = _validate_eval


def _validate_export(self):
    # ExportConfig's own checks need the checkpoint on disk; these are its value checks
    for i, f in enumerate(self.formats):
        choice(f, EXPORT_FORMATS, f"formats[{i}]")
    positive(self.tp, "tp")
    choice(self.dtype, ("auto",) + DTYPE_CHOICES, "dtype")


RunExportConfig = section(
    ExportConfig,
    "RunExportConfig",
    """Deployable copies of the final students (``minitron export``, once per format).""",
    owned={
        "ckpt": "each final student",
        "out": "<workdir>/export/<name>/<format>",
        "format": "each of formats",
        "overwrite": "true",
    },
    extra=(
        (
            "formats",
            List[str],
            field(
                factory=lambda: ["hf"],
                text="Export formats: hf, trtllm and/or megatron (Megatron-LM / Megatron-Bridge).",
            ),
        ),
    ),
    validate=_validate_export,
)


def _validate_bench(self):
    if self.enabled:
        _section_validate(
            {
                "models": [BenchModelConfig(name="teacher", path="<teacher>")],
                "out": "<workdir>/bench",
            }
        )(self)


RunBenchConfig = section(
    BenchConfig,
    "RunBenchConfig",
    """Throughput of the teacher and the final students (``minitron bench``).""",
    owned={"models": "the teacher and the final students", "out": "<workdir>/bench"},
    extra=(("enabled", bool, field(True, "Run the throughput benchmark stage.")),),
    validate=_validate_bench,
)


@dataclass
class RunConfig(TrainingBase):
    """``minitron run``: import -> (correct) -> score -> prune -> distill -> (align) -> eval ->
    export -> bench -> report, in one experiment directory, resumable."""

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
    students: List[StudentConfig] = doc(  # type: ignore[valid-type]
        factory=list, text="The students to make (at least one)."
    )
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
