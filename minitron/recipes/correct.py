"""``minitron correct``: teacher correction, a light fine-tune of the teacher on the
distillation data (paper: 1/5 of the peak LR, 120 warm-up steps), in full, LoRA or
norm-only mode. Resumable; the corrected teacher is ``<out>/final/teacher``.

    minitron correct --config examples/smollm2/correct.yaml
    torchrun --nproc_per_node 2 -m minitron correct --config examples/smollm2/correct.yaml tp=2
"""

from __future__ import annotations

from minitron.config.schema import LossTaskConfig
from minitron.config.train import CorrectConfig
from minitron.data.tokenizer import load_tokenizer
from minitron.eval.evaluator import Evaluator
from minitron.models.builder import DTYPE_NAMES
from minitron.models.load import describe_source, load_model
from minitron.parallel import runtime
from minitron.train import trainable
from minitron.train.loop import Trained, broadcast_metrics, fingerprint, gpt_batches, run
from minitron.train.steps import lm_step


def validator(model, arch, tokenizer_spec: str, cfg) -> callable:
    """val_loss (and a task's accuracy) of ``model`` on held-out data (collective)."""
    ev = Evaluator(model, arch, load_tokenizer(tokenizer_spec), batch_size=32,
                   micro_batch_size=cfg.schedule.micro_batch_size)
    loss = cfg.validation.loss or LossTaskConfig(name="valid", data=cfg.data, split="valid",
                                                 num_samples=16)
    task = ev.prepare(cfg.validation.task) if cfg.validation.task else None

    def validate() -> dict:
        was_training = model.training
        out = {"val_loss": ev.loss(loss)["loss"]}
        if task is not None:
            out[f"val_{task.config.name}_acc"] = ev.multiple_choice(task)["acc"]
        model.train(was_training)
        return out

    return validate


def main(cfg: CorrectConfig, log=print) -> dict:
    runtime.init(cfg.tp, cfg.pp)
    arch, hf_config, tok_dir = describe_source(cfg.model)
    model, arch, _ = load_model(cfg.model, cfg.dtype)
    params, lora = trainable.select(model, cfg.mode, cfg.lora_rank, cfg.lora_alpha,
                                    cfg.schedule.seed)
    dtype = DTYPE_NAMES[next(model.parameters()).dtype]
    teacher = Trained("teacher", model, params, cfg.optim, (arch, hf_config, tok_dir, dtype),
                      before_save=lora.merge if lora is not None else None)
    validate = validator(model, arch, cfg.model, cfg)

    def micro_step(batches):
        model.train()
        return broadcast_metrics(lm_step(model, batches))

    batches = gpt_batches(cfg.data, cfg.schedule, arch.vocab_size)
    return run(cfg.out, [teacher], batches, cfg.schedule, micro_step, validate, fingerprint(cfg),
               cfg.tensorboard, cfg.progress, log)
