"""``minitron prune``: slice a model to a target architecture (width and/or depth), at any TP/PP.

    minitron prune --config examples/smollm2/prune_width.yaml
    minitron prune --config examples/smollm2/prune_depth.yaml --dry-run
    torchrun --nproc_per_node 2 -m minitron prune --config examples/smollm2/prune_width.yaml tp=2

Depth first (which layers survive, chosen on the unpruned model by the
criterion), then width (which channels, heads inside each KV group, and neurons
survive, by the scores). Every tensor of the pruned model is cut from the whole
tensor of the original (gathered over TP/PP one at a time) and resharded for the
layout, so pruning works at TP > 1 and PP > 1.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch

from minitron.checkpoint.load import describe_source, load_model
from minitron.checkpoint.mcore import save_checkpoint
from minitron.config.prune import PruneConfig
from minitron.data.tokenizer import load_tokenizer
from minitron.errors import ConfigError
from minitron.eval.evaluator import Evaluator
from minitron.eval.layer_skip import skip_layers
from minitron.models.arch import ModelArch
from minitron.models.builder import DTYPE_NAMES, build_model, check_layout
from minitron.models.convert import canonical_names
from minitron.models.full_tensors import FullTensors
from minitron.models.params import count_params, describe_arch, human
from minitron.models.weights import is_gated, local_parameters
from minitron.parallel import runtime
from minitron.parallel.shard import tp_shard
from minitron.prune import depth as depth_search
from minitron.prune.baselines import magnitude_scores, random_scores
from minitron.prune.scores import load_scores
from minitron.prune.width import Plan, prune_tensor, select_heads, select_topk


def check_target(arch: ModelArch, cfg: PruneConfig) -> ModelArch:
    """The target architecture, or a ConfigError naming the field and what is valid."""
    sizes = cfg.target.sizes()
    for key, value in sizes.items():
        now = getattr(arch, key)
        if not 0 < value <= now:
            raise ConfigError(
                f"target.{key}",
                f"{value} must be between 1 and the current {now} (pruning only removes)",
            )
    groups = sizes.get("num_query_groups", arch.num_query_groups)
    heads = sizes.get("num_attention_heads", arch.num_attention_heads)
    if heads % groups:
        valid = [m * groups for m in range(1, arch.heads_per_group + 1)]
        raise ConfigError(
            "target.num_attention_heads",
            f"{heads} is not a multiple of "
            f"num_query_groups={groups} (GQA keeps the same heads per group); "
            f"valid: {valid}",
        )
    if heads // groups > arch.heads_per_group:
        raise ConfigError(
            "target.num_attention_heads",
            f"{heads // groups} heads per group, but each group has only {arch.heads_per_group}",
        )
    target = arch.replace(**sizes)
    check_layout(target, cfg.tp, cfg.pp)
    return target


def check_inputs(arch: ModelArch, target: ModelArch, cfg: PruneConfig) -> None:
    """What the chosen methods need, before any weight is loaded."""
    if cfg.scores is not None and not Path(cfg.scores).is_dir():
        raise ConfigError("scores", f"{cfg.scores} does not exist; make it with `minitron score`")
    if target.num_layers < arch.num_layers:
        if cfg.depth.criterion == "block_influence" and not cfg.scores:
            raise ConfigError("scores", "depth.criterion=block_influence needs a score file")
        if cfg.depth.criterion == "lm_loss" and cfg.depth.loss is None:
            raise ConfigError(
                "depth.loss",
                "criterion=lm_loss needs held-out data: depth.loss="
                "{name, data: {paths: [...]}, num_samples}",
            )
    if cfg.width_method == "activation" and _width_changes(arch, target) and not cfg.scores:
        raise ConfigError(
            "scores",
            "width_method=activation needs scores from `minitron score` "
            "(or width_method=magnitude|random)",
        )


def _width_changes(a: ModelArch, b: ModelArch) -> bool:
    return any(
        getattr(a, f) != getattr(b, f)
        for f in ("hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups")
    )


def summary(arch: ModelArch, target: ModelArch) -> str:
    a, b = count_params(arch), count_params(target)
    return (
        f"from  {describe_arch(arch)}\n      {a['total']:,} total ({human(a['total'])}), "
        f"{a['non_embedding']:,} non-embedding ({human(a['non_embedding'])})\n"
        f"to    {describe_arch(target)}\n      {b['total']:,} total ({human(b['total'])}), "
        f"{b['non_embedding']:,} non-embedding ({human(b['non_embedding'])}), "
        f"{100 * b['non_embedding'] / a['non_embedding']:.1f}% of the non-embedding parameters"
    )


def choose_layers(cfg: PruneConfig, model, arch, target, scores) -> dict:
    drop = arch.num_layers - target.num_layers
    if drop == 0:
        return {"drop": [], "keep": list(range(arch.num_layers)), "candidates": []}
    d = cfg.depth
    evaluate = None
    if d.criterion in ("task", "lm_loss"):
        ev = Evaluator(
            model,
            arch,
            load_tokenizer(cfg.model),
            batch_size=cfg.batch_size,
            micro_batch_size=cfg.micro_batch_size,
            progress=False,
        )
        prepared = ev.prepare(d.task) if d.criterion == "task" else None

        def evaluate(layers):
            with skip_layers(model, layers):
                if prepared is not None:
                    return ev.multiple_choice(prepared)["acc"]
                return ev.loss(d.loss)["loss"]

    return depth_search.search(arch.num_layers, drop, d.criterion, d.contiguous, evaluate, scores)


def make_plan(
    arch: ModelArch, target: ModelArch, keep_layers: list[int], scores: dict[str, torch.Tensor]
) -> Plan:
    hpg = target.num_attention_heads // target.num_query_groups
    groups, heads, neurons = [], [], []
    for i in keep_layers:
        g, s = select_heads(
            scores[f"layers.{i}.heads"], arch.num_query_groups, target.num_query_groups, hpg
        )
        groups.append(g)
        heads.append(s)
        neurons.append(select_topk(scores[f"layers.{i}.neurons"], target.ffn_hidden_size))
    return Plan(
        channels=select_topk(scores["channels"], target.hidden_size),
        groups=groups,
        heads=heads,
        neurons=neurons,
        layers=list(keep_layers),
    )


@torch.no_grad()
def fill_pruned(new_model, old_model, plan: Plan, arch: ModelArch, target: ModelArch) -> None:
    """Every rank walks every pruned tensor in the same order (the gathers are collective)
    and keeps its own shard."""
    from megatron.core import parallel_state as ps

    read = FullTensors(old_model)
    mine = {c: p for c, _, p in local_parameters(new_model)}
    tp, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    names = canonical_names(target)
    if target.tie_word_embeddings and ps.get_pipeline_model_parallel_world_size() > 1:
        names.append("output_layer.weight")  # the last stage's copy of the embedding
    for new_name in names:
        old_name = new_name
        if new_name.startswith("decoder.layers."):
            idx, rest = new_name[len("decoder.layers.") :].split(".", 1)
            old_name = f"decoder.layers.{plan.layers[int(idx)]}.{rest}"
        full = read(old_name)
        _, cut = prune_tensor(old_name, full, plan, arch)
        if new_name in mine:
            p = mine[new_name]
            p.copy_(tp_shard(cut, tuple(p.shape), rank, tp, gated=is_gated(new_name)).to(p.dtype))


def main(cfg: PruneConfig, log=print) -> dict:
    t0 = time.perf_counter()
    arch, hf_config, tok_dir = describe_source(cfg.model)
    target = check_target(arch, cfg)
    if cfg.dry_run:
        if os.environ.get("RANK", "0") == "0":
            log(summary(arch, target))
        return {"arch": arch.to_dict(), "target": target.to_dict()}
    check_inputs(arch, target, cfg)
    lay = runtime.init(cfg.tp, cfg.pp)
    model, _, info = load_model(cfg.model, cfg.dtype)
    dtype = next(model.parameters()).dtype
    need_scores = cfg.width_method == "activation" or cfg.depth.criterion == "block_influence"
    file_scores = load_scores(cfg.scores, arch)[0] if (cfg.scores and need_scores) else None
    depth = choose_layers(cfg, model, arch, target, file_scores)
    if cfg.width_method == "activation":
        width_scores = file_scores if _width_changes(arch, target) else random_scores(arch, 0)
        assert width_scores is not None  # check_inputs: a width change needs a score file
    elif cfg.width_method == "magnitude":
        width_scores = magnitude_scores(arch, FullTensors(model))
    else:
        width_scores = random_scores(arch, cfg.seed)
    plan = make_plan(arch, target, depth["keep"], width_scores)
    new = build_model(target, dtype, init_weights=cfg.reinit)
    if not cfg.reinit:
        fill_pruned(new, model, plan, arch, target)
    dtype_name = DTYPE_NAMES[dtype]
    record = {
        "stage": "prune",
        "source": cfg.model,
        "width_method": cfg.width_method,
        "reinit": cfg.reinit,
        "scores": cfg.scores,
        "target": dataclasses.asdict(cfg.target),
        "depth": depth,
        "kept_channels": plan.channels.tolist(),
        "kept_layers": plan.layers,
    }
    save_checkpoint(
        new,
        cfg.out,
        arch=target,
        hf_config=hf_config,
        tokenizer_src=tok_dir,
        dtype=dtype_name,
        overwrite=cfg.overwrite,
        extra=record,
    )
    if lay.is_main:
        log(summary(arch, target))
        if depth["drop"]:
            log(f"[prune] dropped layers {depth['drop']} by {cfg.depth.criterion}")
        log(f"[prune] wrote {cfg.out} in {time.perf_counter() - t0:.1f}s")
    return record
