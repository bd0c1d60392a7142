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
from minitron.models.builder import DTYPE_NAMES
from minitron.models.load import describe_source, load_model
from minitron.parallel import runtime
from minitron.recipes.correct import validator
from minitron.train import trainable
from minitron.train.loop import Trained, broadcast_metrics, fingerprint, gpt_batches, run
from minitron.train.steps import Distiller


def main(cfg: DistillConfig, log=print) -> dict:
    runtime.init(cfg.tp, cfg.pp)
    s_arch, s_hf, s_tok = describe_source(cfg.student)
    t_arch, t_hf, t_tok = describe_source(cfg.teacher)
    if s_arch.vocab_size != t_arch.vocab_size:
        from minitron.errors import ConfigError

        raise ConfigError("teacher", f"vocabulary {t_arch.vocab_size} differs from the student's "
                          f"{s_arch.vocab_size}; logit distillation needs the same tokenizer")
    student, s_arch, _ = load_model(cfg.student, cfg.dtype)
    teacher, t_arch, _ = load_model(cfg.teacher, cfg.dtype)
    dtype = DTYPE_NAMES[next(student.parameters()).dtype]
    trained = [Trained("student", student, list(student.parameters()), cfg.optim,
                       (s_arch, s_hf, s_tok, dtype))]
    if cfg.parallel_correction:
        trained.append(Trained("teacher", teacher, list(teacher.parameters()), cfg.teacher_optim,
                               (t_arch, t_hf, t_tok, dtype)))
    else:
        trainable.freeze(teacher)
        teacher.eval()
    distiller = Distiller(student, teacher, cfg.loss, s_arch.vocab_size, cfg.parallel_correction)
    validate = validator(student, s_arch, cfg.student, cfg)

    def micro_step(batches):
        student.train()
        if cfg.parallel_correction:
            teacher.train()
        return broadcast_metrics(distiller.step(batches))

    batches = gpt_batches(cfg.data, cfg.schedule, s_arch.vocab_size)
    return run(cfg.out, trained, batches, cfg.schedule, micro_step, validate, fingerprint(cfg),
               cfg.tensorboard, cfg.progress, log)
