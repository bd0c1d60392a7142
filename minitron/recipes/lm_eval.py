"""``minitron lm-eval``: run lm-evaluation-harness tasks against a minitron model.

minitron lm-eval --model ckpt/student --tasks my_mc --include-path tasks/
torchrun --nproc_per_node 2 -m minitron lm-eval --model ckpt/student --tasks my_mc tp=2
minitron lm-eval --model ckpt/sft --tasks ifeval_mini --apply_chat_template   # built in
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from minitron.config.schema import LmEvalConfig
from minitron.errors import ConfigError
from minitron.parallel import runtime


def main(cfg: LmEvalConfig, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="minitron_lm_tasks_") as tmp:
        return _evaluate(cfg, log, Path(tmp))


def _evaluate(cfg: LmEvalConfig, log, tmp: Path) -> dict:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager

        from minitron.eval.lm_eval_adapter import MinitronLM
    except ImportError:
        raise ConfigError("tasks", "lm-eval is not installed: pip install lm-eval") from None
    from minitron.eval.lm_tasks import write_tasks

    builtin = write_tasks(cfg.tasks, tmp)  # minitron's own tasks (ifeval_mini)
    include = [str(p) for p in builtin] + ([cfg.include_path] if cfg.include_path else [])
    manager = TaskManager(include_path=include) if include else TaskManager()
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:  # before the model loads
        raise ConfigError(
            "tasks",
            f"unknown lm-eval task(s): {', '.join(unknown)}; check the "
            "names (`lm-eval ls tasks`) or give include_path",
        )
    lm = MinitronLM.load(cfg.model, cfg.tp, cfg.pp, cfg.dtype, cfg.batch_size, cfg.max_length)
    lm.seed = cfg.seed
    lay = runtime.layout()
    if lay.is_main:
        log(f"[lm-eval] {cfg.model}: layout tp={lay.tp} pp={lay.pp} dp={lay.dp}")
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(cfg.tasks),
        num_fewshot=cfg.num_fewshot,
        limit=cfg.limit,
        task_manager=manager,
        log_samples=bool(cfg.samples),
        apply_chat_template=cfg.apply_chat_template,
        fewshot_as_multiturn=(
            cfg.apply_chat_template
            if cfg.fewshot_as_multiturn is None
            else cfg.fewshot_as_multiturn
        ),
        system_instruction=cfg.system_instruction,
        gen_kwargs=cfg.gen_kwargs,
        confirm_run_unsafe_code=cfg.confirm_run_unsafe_code,
        random_seed=cfg.seed,
        numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed,
    )
    if lay.is_main and results is not None:
        from lm_eval.utils import make_table

        log(make_table(results))
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(results["results"], indent=2, default=str))
        if cfg.samples:
            write_samples(Path(cfg.samples), results.get("samples", {}))
    return results["results"] if results else {}


def write_samples(path: Path, samples: dict) -> None:
    """Every document's output (``resps``, filtered) and metrics, one jsonl row each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for task, rows in samples.items():
            for r in rows:
                f.write(json.dumps({"task": task, **r}, default=str) + "\n")
