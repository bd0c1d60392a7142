"""``minitron distill``: logit-only KL distillation of students from a teacher, at any TP/PP.

    minitron distill --config examples/smollm2/distill_width.yaml
    torchrun --nproc_per_node 2 -m minitron distill --config examples/smollm2/distill_width.yaml tp=2
    minitron distill --student ckpt/width --student ckpt/depth --teacher ckpt/teacher --out runs/kd

The teacher is frozen (eval mode, no gradients, no optimizer state) unless
``parallel_correction`` trains it on the LM loss of the same batches. Several students
are distilled together: the teacher's forward runs once per micro-batch for all of them,
and each student has its own optimizer, learning-rate schedule, checkpoints and metrics
(suffixed ``_<name>``). Resumable: rerunning the same command continues from the latest
checkpoint; the distilled students are ``<out>/final/student`` (one student) or
``<out>/final/<name>``.
"""

from __future__ import annotations

from typing import Any

from minitron.checkpoint.load import describe_source, load_model
from minitron.config.train import DistillConfig
from minitron.errors import ConfigError
from minitron.models.builder import DTYPE_NAMES, Execution
from minitron.parallel import runtime
from minitron.recipes.correct import check_data, validator
from minitron.train import settings as run_settings
from minitron.train import trainable
from minitron.train.loop import Trained, gpt_batches, run
from minitron.train.metrics import student_tags
from minitron.train.plan import check_memory, dry_run_plan
from minitron.train.steps import Distiller


def _describe_students(cfg: DistillConfig) -> tuple[list[tuple], list[str]]:
    specs = cfg.student_specs()
    fields = ["student"] if not cfg.students else [f"students[{i}]" for i in range(len(specs))]
    return [describe_source(s, f) for s, f in zip(specs, fields)], fields


def main(cfg: DistillConfig, log=print) -> dict:
    names = cfg.student_names()
    described, fields = _describe_students(cfg)
    t_arch, t_hf, t_tok = describe_source(cfg.teacher, "teacher")
    check_data(cfg)
    for (s_arch, _, _), field in zip(described, fields):
        if cfg.loss.kind == "topk_kl" and cfg.loss.topk > s_arch.vocab_size:
            raise ConfigError(
                "loss.topk",
                f"{cfg.loss.topk} is more than the vocabulary ({s_arch.vocab_size} tokens)",
            )
        if s_arch.vocab_size != t_arch.vocab_size:
            raise ConfigError(
                "teacher",
                f"vocabulary {t_arch.vocab_size} differs from {field}'s "
                f"{s_arch.vocab_size}; logit distillation needs the same tokenizer",
            )
    if cfg.parallel_correction and cfg.dtype == "float16":
        raise ConfigError(
            "dtype",
            "float16 with parallel_correction would scale both models' "
            "losses with one loss scaler: use bfloat16 (or float32)",
        )
    pc = cfg.parallel_correction
    planned: dict[str, Any] = {
        "trained": [(n, d[0], "full") for n, d in zip(names, described)]
        + ([("teacher", t_arch, "full")] if pc else []),
        "frozen": [] if pc else [("teacher", t_arch)],
        "loss_kind": "kd",
        "loss_chunk_tokens": cfg.loss.chunk_size,
    }
    if cfg.dry_run:
        return dry_run_plan(cfg, log=log, **planned)
    check_memory(cfg, **planned)
    runtime.init(cfg.tp, cfg.pp)
    execution = Execution.of(cfg)
    trained, validators = [], []
    for name, spec, (_, s_hf, s_tok) in zip(names, cfg.student_specs(), described):
        student, s_arch, _ = load_model(spec, cfg.dtype, execution=execution)
        dtype = DTYPE_NAMES[next(student.parameters()).dtype]
        trained.append(Trained(name, student, cfg.optim, (s_arch, s_hf, s_tok, dtype)))
        validators.append(validator(student, s_arch, spec, cfg))
    teacher, t_arch, _ = load_model(cfg.teacher, cfg.dtype, execution=execution)
    students = list(trained)
    if pc:
        trained.append(Trained("teacher", teacher, cfg.teacher_optim, (t_arch, t_hf, t_tok, dtype)))
    else:
        trainable.freeze(teacher)
        teacher.eval()
    tags = student_tags(names)
    for t, tag in zip(students, tags):
        t.tag = tag  # grad_norm_<name>, lr_<name>: every student's own

    def validate() -> dict:
        out = {}
        for tag, v in zip(tags, validators):
            out.update({f"{k}{tag}": x for k, x in v().items()})
        return out

    def make_step():
        t = trained[-1].ddp if pc else teacher
        return Distiller([s.ddp for s in students], t, cfg.loss, t_arch.vocab_size, pc, names).step

    batches = gpt_batches(cfg.data, cfg.schedule, t_arch.vocab_size)
    return run(
        cfg.out, trained, batches, cfg.schedule, make_step, validate, run_settings.of(cfg), cfg, log
    )
