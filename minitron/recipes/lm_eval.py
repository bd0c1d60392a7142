"""``minitron lm-eval``: run lm-evaluation-harness tasks against a minitron model.

    minitron lm-eval --model ckpt/student --tasks my_mc --include-path tasks/
    torchrun --nproc_per_node 2 -m minitron lm-eval --model ckpt/student --tasks my_mc tp=2
"""

from __future__ import annotations

import json
from pathlib import Path

from minitron.config.schema import LmEvalConfig
from minitron.errors import ConfigError
from minitron.parallel import runtime


def main(cfg: LmEvalConfig, log=print) -> dict:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager

        from minitron.eval.lm_eval_adapter import MinitronLM
    except ImportError:
        raise ConfigError("tasks", "lm-eval is not installed: pip install lm-eval") from None
    manager = TaskManager(include_path=cfg.include_path) if cfg.include_path else TaskManager()
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:  # before the model loads
        raise ConfigError("tasks", f"unknown lm-eval task(s): {', '.join(unknown)}; check the "
                          "names (`lm-eval ls tasks`) or give include_path")
    lm = MinitronLM.load(cfg.model, cfg.tp, cfg.pp, cfg.dtype, cfg.batch_size, cfg.max_length)
    results = lm_eval.simple_evaluate(model=lm, tasks=list(cfg.tasks), num_fewshot=cfg.num_fewshot,
                                      limit=cfg.limit, task_manager=manager, log_samples=False)
    if runtime.layout().is_main and results is not None:
        from lm_eval.utils import make_table

        log(make_table(results))
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(results["results"], indent=2, default=str))
    return results["results"] if results else {}
