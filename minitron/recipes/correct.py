"""``minitron correct``: teacher correction, a light fine-tune of the teacher on the
distillation data (paper: 1/5 of the peak LR, 120 warm-up steps), in full, LoRA or
norm-only mode. Resumable; the corrected teacher is ``<out>/final/teacher``.

    minitron correct --config examples/smollm2/correct.yaml
    torchrun --nproc_per_node 2 -m minitron correct --config examples/smollm2/correct.yaml tp=2
"""

from __future__ import annotations

from typing import Callable

from minitron.checkpoint.load import describe_source, load_model
from minitron.config.schema import LossTaskConfig
from minitron.config.train import CorrectConfig
from minitron.data.datasets import resolve_prefixes
from minitron.data.tokenizer import load_tokenizer
from minitron.errors import ConfigError
from minitron.eval.evaluator import Evaluator
from minitron.models.builder import DTYPE_NAMES, Execution
from minitron.parallel import runtime
from minitron.train import settings as run_settings
from minitron.train import trainable
from minitron.train.loop import Trained, gpt_batches, run
from minitron.train.plan import check_memory, dry_run_plan
from minitron.train.steps import lm_step


def validator(model, arch, tokenizer_spec: str, cfg) -> Callable[[], dict]:
    """val_loss, its standard error over the held-out samples (and a task's accuracy) of
    ``model`` on held-out data (collective)."""
    ev = Evaluator(
        model,
        arch,
        load_tokenizer(tokenizer_spec),
        batch_size=32,
        micro_batch_size=cfg.schedule.micro_batch_size,
    )
    loss = cfg.validation.loss or LossTaskConfig(
        name="valid", data=cfg.data, split="valid", num_samples=16
    )
    task = ev.prepare(cfg.validation.task) if cfg.validation.task else None

    def validate() -> dict:
        was_training = model.training
        r = ev.loss(loss)
        out = {"val_loss": r["loss"], "val_loss_stderr": r["stderr"]}
        if task is not None:
            out[f"val_{task.config.name}_acc"] = ev.multiple_choice(task)["acc"]
        model.train(was_training)
        return out

    return validate


def check_data(cfg) -> None:
    """The training (and validation) data exist: before any model loads."""
    resolve_prefixes(cfg.data)
    if cfg.validation.loss is not None:
        try:
            resolve_prefixes(cfg.validation.loss.data)
        except ConfigError as e:
            raise ConfigError(f"validation.loss.{e.field}", e.message) from None


def main(cfg: CorrectConfig, log=print) -> dict:
    arch, hf_config, tok_dir = describe_source(cfg.model)
    check_data(cfg)
    if cfg.mode == "lora" and cfg.lora_rank > min(arch.hidden_size, arch.ffn_hidden_size):
        raise ConfigError(
            "lora_rank",
            f"{cfg.lora_rank} is more than the model's hidden size "
            f"({arch.hidden_size}); a LoRA rank is far smaller (e.g. 16)",
        )
    planned = {"trained": [("teacher", arch, cfg.mode)]}
    if cfg.dry_run:
        return dry_run_plan(cfg, log=log, **planned)
    check_memory(cfg, **planned)
    runtime.init(cfg.tp, cfg.pp)
    model, arch, _ = load_model(cfg.model, cfg.dtype, execution=Execution.of(cfg))
    _, lora = trainable.select(model, cfg.mode, cfg.lora_rank, cfg.lora_alpha, cfg.schedule.seed)
    dtype = DTYPE_NAMES[next(model.parameters()).dtype]
    teacher = Trained(
        "teacher",
        model,
        cfg.optim,
        (arch, hf_config, tok_dir, dtype),
        before_save=lora.merge if lora is not None else None,
    )
    validate = validator(model, arch, cfg.model, cfg)
    batches = gpt_batches(cfg.data, cfg.schedule, arch.vocab_size)
    return run(
        cfg.out,
        [teacher],
        batches,
        cfg.schedule,
        lambda: lambda mbs: lm_step(teacher.ddp, mbs),
        validate,
        run_settings.of(cfg),
        cfg,
        log,
    )
