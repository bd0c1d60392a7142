"""``minitron distill``: logit-only KL distillation of a student from a teacher, at any TP/PP.

    minitron distill --config examples/smollm2/distill_width.yaml
    torchrun --nproc_per_node 2 -m minitron distill --config examples/smollm2/distill_width.yaml tp=2

The teacher is frozen (eval mode, no gradients, no optimizer state) unless
``parallel_correction`` trains it on the LM loss of the same batches. Resumable:
rerunning the same command continues from the latest checkpoint; the distilled
student is ``<out>/final/student``.
"""

from __future__ import annotations

from minitron.config.train import DistillConfig
from minitron.errors import ConfigError
from minitron.models.builder import DTYPE_NAMES, Execution
from minitron.models.load import describe_source, load_model
from minitron.parallel import runtime
from minitron.recipes.correct import check_data, validator
from minitron.train import settings as run_settings
from minitron.train import trainable
from minitron.train.loop import Trained, gpt_batches, run
from minitron.train.plan import check_memory, dry_run_plan
from minitron.train.steps import Distiller


def main(cfg: DistillConfig, log=print) -> dict:
    s_arch, s_hf, s_tok = describe_source(cfg.student, "student")
    t_arch, t_hf, t_tok = describe_source(cfg.teacher, "teacher")
    check_data(cfg)
    if cfg.loss.kind == "topk_kl" and cfg.loss.topk > s_arch.vocab_size:
        raise ConfigError("loss.topk", f"{cfg.loss.topk} is more than the vocabulary "
                          f"({s_arch.vocab_size} tokens)")
    if s_arch.vocab_size != t_arch.vocab_size:
        raise ConfigError("teacher", f"vocabulary {t_arch.vocab_size} differs from the student's "
                          f"{s_arch.vocab_size}; logit distillation needs the same tokenizer")
    if cfg.parallel_correction and cfg.dtype == "float16":
        raise ConfigError("dtype", "float16 with parallel_correction would scale both models' "
                          "losses with one loss scaler: use bfloat16 (or float32)")
    pc = cfg.parallel_correction
    planned = {"trained": [("student", s_arch, "full")] + ([("teacher", t_arch, "full")] if pc
                                                           else []),
               "frozen": [] if pc else [("teacher", t_arch)], "loss_kind": "kd",
               "loss_chunk_tokens": cfg.loss.chunk_size}
    if cfg.dry_run:
        return dry_run_plan(cfg, log=log, **planned)
    check_memory(cfg, **planned)
    runtime.init(cfg.tp, cfg.pp)
    execution = Execution.of(cfg)
    student, s_arch, _ = load_model(cfg.student, cfg.dtype, execution=execution)
    teacher, t_arch, _ = load_model(cfg.teacher, cfg.dtype, execution=execution)
    dtype = DTYPE_NAMES[next(student.parameters()).dtype]
    trained = [Trained("student", student, cfg.optim, (s_arch, s_hf, s_tok, dtype))]
    if cfg.parallel_correction:
        trained.append(Trained("teacher", teacher, cfg.teacher_optim, (t_arch, t_hf, t_tok, dtype)))
    else:
        trainable.freeze(teacher)
        teacher.eval()
    validate = validator(student, s_arch, cfg.student, cfg)

    def make_step():
        t = trained[1].ddp if cfg.parallel_correction else teacher
        return Distiller(trained[0].ddp, t, cfg.loss, s_arch.vocab_size,
                         cfg.parallel_correction).step

    batches = gpt_batches(cfg.data, cfg.schedule, s_arch.vocab_size)
    return run(cfg.out, trained, batches, cfg.schedule, make_step, validate, run_settings.of(cfg),
               cfg, log)
