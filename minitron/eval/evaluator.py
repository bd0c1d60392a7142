"""The evaluator every stage calls: LM loss and multiple-choice tasks on a loaded model.

    ev = Evaluator(model, arch, tokenizer)
    wino = ev.prepare(MCTaskConfig(limit=500))       # items, few-shot prompts, token ids: once
    ev.multiple_choice(wino)["acc"]
    with skip_layers(model, range(20, 26)):          # depth pruning: hundreds of these
        ev.multiple_choice(wino)["acc"]

Preparing a task (reading items, drawing few-shot examples, tokenizing every
request) and drawing LM-loss samples happen once and are cached, so repeated
evaluations of the same model under different layer skips only run forwards.
All methods are collective over the model's ranks and return on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Optional

from minitron.config.schema import LossTaskConfig, MCTaskConfig
from minitron.data.datasets import samples
from minitron.errors import MinitronError
from minitron.eval.lm_loss import lm_loss
from minitron.eval.multiple_choice import build_requests, evaluate_requests
from minitron.eval.tasks import MCItem, fewshot_prefixes, load_items, subset


@dataclasses.dataclass
class PreparedTask:
    config: MCTaskConfig
    items: list[MCItem]
    requests: list
    owners: list


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)


class Evaluator:
    def __init__(
        self,
        model,
        arch,
        tokenizer,
        *,
        batch_size: int = 32,
        micro_batch_size: int = 4,
        max_length: int = 2048,
        progress: bool = False,
    ):
        from minitron.parallel import runtime

        self.model, self.arch, self.tok = model, arch, tokenizer
        self.batch_size, self.micro_batch_size, self.max_length = (
            batch_size,
            micro_batch_size,
            max_length,
        )
        self.progress = progress and runtime.layout().is_main
        sep = (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        )
        self.empty_context_id = int(sep or 0)
        self._loss_samples: dict = {}

    def prepare(self, task: MCTaskConfig) -> PreparedTask:
        items = subset(load_items(task.path, task.format), task.limit, task.seed)
        if task.fewshot_path:
            pool, same = load_items(task.fewshot_path, task.format), False
        else:
            pool, same = items, True
        prefixes = fewshot_prefixes(items, pool, task.num_fewshot, task.seed, same)
        requests, owners = build_requests(items, prefixes, self.tok, self.empty_context_id)
        return PreparedTask(task, items, requests, owners)

    def multiple_choice(self, task: PreparedTask) -> dict:
        with _bar(self.progress, len(task.requests), task.config.name) as bar:
            return evaluate_requests(
                self.model,
                self.arch.vocab_size,
                task.items,
                task.requests,
                task.owners,
                batch_size=self.batch_size,
                max_length=self.max_length,
                progress=bar,
            )

    def loss(self, task: LossTaskConfig) -> dict:
        key = (task.name, task.split, task.num_samples)
        if key not in self._loss_samples:
            self._loss_samples[key] = samples(
                task.data, task.split, task.num_samples, self.arch.vocab_size
            )
        batch = self._loss_samples[key]
        with _bar(self.progress, task.num_samples, task.name) as bar:
            return lm_loss(self.model, batch, self.arch.vocab_size, self.micro_batch_size, bar)


def require_finite(loss: float, what: str) -> None:
    """A NaN or inf loss is an error (the weights or the data are broken), not a result."""
    if not math.isfinite(loss):
        raise MinitronError(
            f"the loss of {what} is not finite ({loss}); the model holds NaN/inf "
            "weights or overflows in this dtype (try dtype=float32)"
        )


def records(
    name: str, kind: str, result: dict, common: dict, task: Optional[MCTaskConfig] = None
) -> list[dict]:
    """One JSON record per metric: metric, value, stderr, n and the run's facts."""
    out = []
    if kind == "loss":
        require_finite(result["loss"], f"{common.get('model', 'the model')} on {name}")
        out.append(
            {
                "task": name,
                "metric": "loss",
                "value": result["loss"],
                "stderr": result["stderr"],
                "n": result["samples"],
                "tokens": result["tokens"],
                **common,
            }
        )
        out.append(
            {
                "task": name,
                "metric": "perplexity",
                "value": result["perplexity"],
                "stderr": None,
                "n": result["samples"],
                "tokens": result["tokens"],
                **common,
            }
        )
        return out
    if task is None:
        raise ValueError(f"{name}: a multiple-choice record needs its task")
    for metric in ("acc", "acc_norm"):
        if metric in result:
            out.append(
                {
                    "task": name,
                    "metric": metric,
                    "value": result[metric],
                    "stderr": result[f"{metric}_stderr"],
                    "n": result["n"],
                    "num_fewshot": task.num_fewshot,
                    "seed": task.seed,
                    **common,
                }
            )
    return out


def table(rows: list[dict]) -> str:
    """One line per metric, for the console."""
    lines = [f"{'task':<22}{'metric':<12}{'value':>10}{'stderr':>10}{'n':>8}"]
    for r in rows:
        se = "" if r["stderr"] is None else f"{r['stderr']:.4f}"
        lines.append(f"{r['task']:<22}{r['metric']:<12}{r['value']:>10.4f}{se:>10}{r['n']:>8}")
    return "\n".join(lines)
