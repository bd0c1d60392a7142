"""``minitron align``: SFT, DPO, IPO or RPO on megatron-core at any TP/PP, resumable.

    minitron align --config examples/smollm2/sft.yaml
    minitron align --config examples/smollm2/rpo.yaml
    torchrun --nproc_per_node 2 -m minitron align --config examples/smollm2/rpo.yaml tp=2

Preference algorithms keep a frozen reference (the starting model by default: no
gradients, no optimizer state). With ``rounds: k`` the run repeats, each round's
final policy becoming the next round's starting point and reference
(``<out>/round_<k>/final/policy``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from minitron.align import builtin
from minitron.align.data import (
    ChatRenderer,
    check_rows,
    load_pairs,
    load_sft,
    pack,
    pair_rows,
    read_rows,
)
from minitron.align.steps import PreferenceStep, sft_step
from minitron.checkpoint.load import describe_source, load_model
from minitron.config.align import AlignConfig
from minitron.data.tokenizer import load_tokenizer
from minitron.models.builder import DTYPE_NAMES, Execution
from minitron.parallel import runtime
from minitron.parallel.schedule import from_last_stage, pipeline_forward
from minitron.train import settings as run_settings
from minitron.train import trainable
from minitron.train.loop import Trained, run, split_micro
from minitron.train.plan import check_memory, dry_run_plan


def _rows(spec: str):
    return builtin.rows(spec) if spec.startswith("builtin:") else read_rows(spec)


def _valid_spec(cfg: AlignConfig) -> str | None:
    if cfg.valid_data:
        return cfg.valid_data
    if cfg.data.startswith("builtin:"):
        return ":".join(cfg.data.split(":")[:2]) + ":valid"
    return None


def order(n: int, seed: int, global_index: int) -> int:
    """Item for a global sample index: a fresh seeded permutation every epoch."""
    epoch, i = divmod(global_index, n)
    perm = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return perm[i]


def provider(items: list, cfg: AlignConfig, collate):
    """Step -> this data-parallel rank's micro-batches of global batch ``step``. Preference
    pairs are padded to the longest row of the whole step: one schedule call carries every
    micro-batch, and its pipeline buffers have one shape."""
    lay = runtime.layout()
    g, m = cfg.schedule.global_batch_size, cfg.schedule.micro_batch_size
    per_rank = g // lay.dp

    def batches(step: int) -> list[dict]:
        start = step * g + lay.dp_rank * per_rank
        picked = [items[order(len(items), cfg.schedule.seed, start + j)] for j in range(per_rank)]
        if collate is pair_rows:
            width = max(len(e.ids) for p in picked for e in (p.chosen, p.rejected)) - 1
            return [pair_rows(picked[i : i + m], width=width) for i in range(0, per_rank, m)]
        return [collate(picked[i : i + m]) for i in range(0, per_rank, m)]

    return batches


def _stack(rows: list[dict]) -> dict:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def sft_loss_on(model, rows: list[dict], micro: int) -> float:
    """Mean NLL of the response tokens of held-out rows (collective)."""

    def collect(ce, b):
        mask = b["loss_mask"].to(ce.device).float()
        return torch.stack([(ce.float() * mask).sum().double(), mask.sum().double()]).cpu()

    total, last = torch.zeros(2, dtype=torch.float64), True
    for mb in split_micro(_stack(rows), micro):
        res = pipeline_forward(model, [mb], collect, with_labels=True)
        if res is None:
            last = False
        else:
            total += res[0]
    total = from_last_stage(total if last else None)
    return float(total[0] / total[1].clamp(min=1))


def run_round(cfg: AlignConfig, run_dir: Path, start: str, reference: str, data, log):
    arch, hf_config, tok_dir = describe_source(start)
    execution = Execution.of(cfg)
    policy, arch, _ = load_model(start, cfg.dtype, execution=execution)
    dtype = DTYPE_NAMES[next(policy.parameters()).dtype]
    trained = Trained("policy", policy, cfg.optim, (arch, hf_config, tok_dir, dtype))
    train_items, valid_items = data
    micro = cfg.schedule.micro_batch_size
    if cfg.algorithm == "sft":
        batches = provider(train_items, cfg, _stack)

        def make_step():
            return lambda mbs: sft_step(trained.ddp, mbs)

        def validate():
            return {"val_loss": sft_loss_on(policy, valid_items, micro)} if valid_items else {}
    else:
        ref_model, _, _ = load_model(reference, cfg.dtype, execution=execution)
        trainable.freeze(ref_model)
        ref_model.eval()
        step = PreferenceStep(policy, ref_model, cfg)
        batches = provider(train_items, cfg, pair_rows)

        def make_step():
            return PreferenceStep(trained.ddp, ref_model, cfg).step

        def validate():
            if not valid_items:
                return {}
            policy.eval()
            mbs = [pair_rows(valid_items[i : i + micro]) for i in range(0, len(valid_items), micro)]
            res = from_last_stage(step.evaluate(mbs))
            keys = (
                "reward_accuracy",
                "reward_margin",
                "logp_accuracy",
                "kl_to_reference",
                "preference_loss",
            )
            return {f"val_{k}": res[k] for k in keys}

    return run(
        run_dir,
        [trained],
        batches,
        cfg.schedule,
        make_step,
        validate,
        run_settings.of(cfg),
        cfg,
        log,
    )


def main(cfg: AlignConfig, log=print) -> dict:
    arch, _, _ = describe_source(cfg.model)
    pref = cfg.algorithm != "sft"
    planned: dict[str, Any] = {
        "trained": [("policy", arch, "full")],
        "frozen": [("reference", arch)] if pref else [],
        "seq_length": cfg.seq_length,
        "rows_per_sample": 2 if pref else 1,
    }
    kind = "preferences" if pref else "sft"
    for field in ("data", "valid_data"):  # every row's structure, before any model loads
        if getattr(cfg, field):
            check_rows(getattr(cfg, field), kind, field)
    if cfg.dry_run:
        return dry_run_plan(cfg, log=log, **planned)
    check_memory(cfg, **planned)
    runtime.init(cfg.tp, cfg.pp)
    tok = load_tokenizer(cfg.model)
    renderer = ChatRenderer(tok, cfg.chat_template)
    valid_spec = _valid_spec(cfg)
    if cfg.algorithm == "sft":

        def load(spec):
            exs = load_sft(_rows(spec), renderer, cfg.seq_length)
            if cfg.pack:
                return pack(exs, cfg.seq_length)
            return [r for ex in exs for r in pack([ex], cfg.seq_length)]
    else:

        def load(spec):
            return load_pairs(
                _rows(spec),
                renderer,
                cfg.seq_length,
                cfg.default_chosen_reward,
                cfg.default_rejected_reward,
            )

    train_items = load(cfg.data)
    valid_items = load(valid_spec)[: cfg.validation_samples] if valid_spec else []
    out = Path(cfg.out)
    result, start = {}, cfg.model
    for k in range(1, cfg.rounds + 1):
        run_dir = out if cfg.rounds == 1 else out / f"round_{k}"
        reference = (cfg.reference or cfg.model) if k == 1 else start
        result[f"round_{k}"] = run_round(
            cfg, run_dir, start, reference, (train_items, valid_items), log
        )
        start = str(run_dir / "final" / "policy")
    return result
