"""``minitron search``: architectures under a parameter budget, ranked after a short distillation.

    minitron search --model ckpt/teacher --scores runs/x/scores --out runs/x/search \\
        data.paths=[runs/x/data] budget.fraction=0.5 --dry-run
    minitron search --config examples/smollm2/search.yaml
    minitron search --config examples/smollm2/search.yaml shard=0/4   # a SLURM array task
    minitron search --config examples/smollm2/search.yaml --collect   # rank what shards made

For every candidate of the space inside the budget (``search/space.py``), in its own
directory ``<out>/candidates/<name>/``: prune it from the one score file
(``pruned/``), take its held-out loss (``zero_shot.json``); keep the best ``top_k`` by that
loss (or all), distil them in groups that share one teacher forward per micro-batch
(``<out>/distill/<group>/``), take each one's held-out loss after distillation
(``distilled.json``), and rank (``ranking.json``, ``ranking.md``, ``ranking.png``). Every
file is written atomically and a finished one is never redone: a killed search rerun
repeats no candidate; a distillation group resumes from its checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

from minitron.checkpoint import atomic
from minitron.checkpoint.load import describe_source
from minitron.config.loader import validate
from minitron.config.prune import PruneConfig, TargetConfig
from minitron.config.schema import EvalConfig, LossTaskConfig
from minitron.config.search import SearchConfig
from minitron.config.sections import stage_config
from minitron.errors import ConfigError
from minitron.models.arch import ModelArch
from minitron.models.params import count_params, human
from minitron.search.rank import spearman, top_k
from minitron.search.space import AXES, Axis, Candidate, enumerate_candidates, shard
from minitron.train.metrics import student_tags


def candidates(cfg: SearchConfig, log) -> tuple[list[Candidate], ModelArch]:
    teacher, _, _ = describe_source(cfg.model)
    budget, kind = cfg.budget.resolve(count_params(teacher))
    axes = {}
    for a in AXES:
        ax = getattr(cfg.space, a)
        axes[a] = Axis(
            tuple(ax.choices) if ax.choices is not None else None, ax.step, ax.max_shrink
        )
    found = enumerate_candidates(
        teacher,
        axes,
        budget,
        kind,
        cfg.budget.tolerance,
        cfg.tp,
        cfg.pp,
        cfg.space.hf_compatible,
    )
    if cfg.only is not None:
        unknown = sorted(set(cfg.only) - {c.name for c in found})
        if unknown:
            raise ConfigError("only", f"{unknown} are not candidates of this space and budget")
        found = [c for c in found if c.name in cfg.only]
    if not found:
        raise ConfigError(
            "budget",
            f"no architecture of the space has {human(int((1 - cfg.budget.tolerance) * budget))}"
            f"-{human(budget)} {kind.replace('_', ' ')}; widen the space or the tolerance",
        )
    log(f"[search] {len(found)} candidates with at most {budget:,} {kind.replace('_', ' ')}")
    return found, teacher


def _held_out(cfg: SearchConfig) -> LossTaskConfig:
    data = dataclasses.replace(cfg.data, seed=99)
    return LossTaskConfig(name="heldout", data=data, split="valid", num_samples=cfg.heldout_samples)


def _write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2))


def _evaluate(cfg: SearchConfig, model: Path) -> dict:
    """Held-out loss (and the task, if any) of ``model``."""
    from minitron.recipes import evaluate

    rows = evaluate.main(
        validate(
            EvalConfig(
                model=str(model),
                tasks=[cfg.task] if cfg.task else [],
                loss=[_held_out(cfg)],
                tp=cfg.tp,
                pp=cfg.pp,
                dtype=cfg.dtype,
                progress=False,
            )
        ),
        log=lambda s: None,
    )
    res = {r["task"] + "." + r["metric"]: r["value"] for r in rows}
    res["loss"] = res["heldout.loss"]
    res["loss_stderr"] = next(r["stderr"] for r in rows if r["task"] == "heldout")
    return res


def _prune_and_score(cfg: SearchConfig, c: Candidate, teacher, root: Path, log) -> dict:
    from minitron.recipes import prune

    d = root / "candidates" / c.name
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "arch.json").exists():
        _write_json(d / "arch.json", {"sizes": c.sizes, "params": c.params})
    if not (d / "zero_shot.json").exists():
        t0 = time.perf_counter()
        if not (d / "pruned" / "manifest.json").exists():  # a checkpoint is atomic
            depth = dataclasses.replace(cfg.depth)
            if depth.criterion == "lm_loss" and depth.loss is None:
                depth.loss = _held_out(cfg)
            prune.main(
                validate(
                    PruneConfig(
                        model=cfg.model,
                        out=str(d / "pruned"),
                        target=TargetConfig(**c.target(teacher)),
                        scores=cfg.scores,
                        width_method=cfg.width_method,
                        depth=depth,
                        tp=cfg.tp,
                        pp=cfg.pp,
                        overwrite=True,
                        progress=False,
                    )
                ),
                log=lambda s: None,
            )
        res = _evaluate(cfg, d / "pruned")
        _write_json(d / "zero_shot.json", res)
        log(
            f"[search] {c.name}: zero-shot loss {res['loss']:.4f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    return json.loads((d / "zero_shot.json").read_text())


def _group_dir(root: Path, names: list[str]) -> Path:
    key = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:10]
    return root / "distill" / key


def distill_config(cfg: SearchConfig, names: list[str], root: Path):
    """The ``minitron distill`` config of one group: its candidates distilled together."""
    dc = stage_config(
        cfg.distill,
        student="",
        students=[str(root / "candidates" / n / "pruned") for n in names],
        names=list(names),
        teacher=cfg.model,
        out=str(_group_dir(root, names)),
        data=cfg.data,
        **cfg.training_values(dry_run=False, progress=False),
    )
    if dc.validation.loss is None:
        dc.validation.loss = _held_out(cfg)
    return dc


def final_validation(run: Path, names: list[str], steps: int) -> dict | None:
    """{name: (loss, stderr)} of the validation at the last step of the group ``run`` (its
    metrics.csv), or None where a value is missing."""
    f = run / "metrics.csv"
    if not f.is_file():
        return None
    with f.open() as fh:
        row = next((r for r in csv.DictReader(fh) if int(r["step"]) == steps), None)
    out = {}
    for n, tag in zip(names, student_tags(names)):
        loss, se = (row or {}).get(f"val_loss{tag}"), (row or {}).get(f"val_loss_stderr{tag}")
        if not loss or not se:
            return None
        out[n] = (float(loss), float(se))
    return out


def _distil(cfg: SearchConfig, names: list[str], root: Path, log) -> None:
    """One group: distilled together, then each one's held-out loss: the training's last
    validation when that is the search's held-out loss and no task is asked for, else
    measured again on the final checkpoint."""
    from minitron.recipes import distill

    dc = distill_config(cfg, names, root)
    run = Path(dc.out)
    t0 = time.perf_counter()
    distill.main(validate(dc), log=lambda s: None)
    seconds = time.perf_counter() - t0
    same = dc.validation.loss == _held_out(cfg) and cfg.task is None
    known = final_validation(run, names, dc.schedule.steps) if same else None
    for n in names:
        final = run / "final" / n
        if known is not None:
            res = {"heldout.loss": known[n][0], "loss": known[n][0], "loss_stderr": known[n][1]}
            res["measured"] = "the distillation's validation at its last step"
        else:
            res = _evaluate(cfg, final)
            res["measured"] = "evaluation of the final checkpoint"
        res.update(
            steps=dc.schedule.steps, group=run.name, group_seconds=seconds, checkpoint=str(final)
        )
        _write_json(root / "candidates" / n / "distilled.json", res)
        log(f"[search] {n}: distilled loss {res['loss']:.4f}")
    # the group is done and never resumed: its resume checkpoints (weights and optimizer
    # state of every candidate) would only fill the disk; final/ keeps the weights
    from minitron.parallel import runtime

    runtime.on_main(shutil.rmtree, run / "checkpoints", ignore_errors=True)


def collect(root: Path, log) -> dict:
    """Rank every candidate the directory holds; write ranking.json / .md / .png."""
    rows = []
    for d in sorted((root / "candidates").glob("*")):
        if not (d / "zero_shot.json").exists():
            continue
        arch = json.loads((d / "arch.json").read_text())
        z = json.loads((d / "zero_shot.json").read_text())
        dist = (
            json.loads((d / "distilled.json").read_text())
            if (d / "distilled.json").exists()
            else None
        )
        rows.append(
            {
                "name": d.name,
                **arch,
                "zero_shot": z["loss"],
                "distilled": dist["loss"] if dist else None,
                "distilled_stderr": dist["loss_stderr"] if dist else None,
            }
        )
    if not rows:
        raise ConfigError("out", f"{root} holds no scored candidate yet")
    done = [r for r in rows if r["distilled"] is not None]
    order = top_k({r["name"]: r["distilled"] for r in done}, None)
    zorder = top_k({r["name"]: r["zero_shot"] for r in rows}, None)
    for r in rows:
        r["zero_shot_rank"] = zorder.index(r["name"]) + 1
        r["distilled_rank"] = order.index(r["name"]) + 1 if r["name"] in order else None
    rho = spearman([r["zero_shot"] for r in done], [r["distilled"] for r in done])
    result = {
        "candidates": sorted(rows, key=lambda r: (r["distilled_rank"] or 1e9, r["zero_shot_rank"])),
        "best": order[0] if order else None,
        "distilled": len(done),
        "spearman_zero_shot_vs_distilled": rho,
    }
    _write_json(root / "ranking.json", result)
    atomic.write_text(root / "ranking.md", table(result))
    plot(result, root / "ranking.png")
    log(table(result))
    return result


def table(result: dict) -> str:
    lines = [
        "| rank | candidate | params | zero-shot loss (rank) | distilled loss |",
        "|---|---|---|---|---|",
    ]
    for r in result["candidates"]:
        dist = (
            "-" if r["distilled"] is None else f"{r['distilled']:.4f} ± {r['distilled_stderr']:.4f}"
        )
        lines.append(
            f"| {r['distilled_rank'] or '-'} | {r['name']} | {human(r['params'])} | "
            f"{r['zero_shot']:.4f} ({r['zero_shot_rank']}) | {dist} |"
        )
    rho = result["spearman_zero_shot_vs_distilled"]
    lines.append(
        f"\nSpearman rank correlation, zero-shot vs distilled: {rho:.3f} "
        f"({result['distilled']} distilled candidates)"
    )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return
    rows = [r for r in result["candidates"] if r["distilled"] is not None]
    if not rows:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter([r["params"] for r in rows], [r["distilled"] for r in rows])
    for r in rows:
        a.annotate(r["name"], (r["params"], r["distilled"]), fontsize=6)
    a.set_xlabel("parameters (budgeted)")
    a.set_ylabel("held-out loss after distillation")
    b.scatter([r["zero_shot_rank"] for r in rows], [r["distilled_rank"] for r in rows])
    b.set_xlabel("zero-shot rank")
    b.set_ylabel("rank after distillation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(cfg: SearchConfig, log=print) -> dict:
    root = Path(cfg.out)
    if cfg.collect:
        return collect(root, log)
    found, teacher = candidates(cfg, log)
    if cfg.dry_run:
        for c in found:
            log(f"  {c.name:<24} {c.params:>14,} ({human(c.params)})  target {c.target(teacher)}")
        return {"candidates": [c.name for c in found]}
    i, n = cfg.shard_index()
    mine = shard(found, i, n)
    root.mkdir(parents=True, exist_ok=True)
    zero = {c.name: _prune_and_score(cfg, c, teacher, root, log)["loss"] for c in mine}
    if cfg.top_k is not None:
        scored = {
            c.name: json.loads((root / "candidates" / c.name / "zero_shot.json").read_text())[
                "loss"
            ]
            for c in found
            if (root / "candidates" / c.name / "zero_shot.json").exists()
        }
        if len(scored) < len(found):
            log(
                f"[search] {len(scored)}/{len(found)} candidates scored: top_k needs them all; "
                "rerun this shard when every shard has scored its candidates"
            )
            return {"waiting": len(found) - len(scored)}
        keep = set(top_k(scored, cfg.top_k))
    else:
        keep = {c.name for c in found}
    todo = [
        c.name
        for c in mine
        if c.name in keep and not (root / "candidates" / c.name / "distilled.json").exists()
    ]
    g = cfg.distill.group_size
    for k in range(0, len(todo), g):
        _distil(cfg, todo[k : k + g], root, log)
    if n == 1:  # written once, under torchrun too
        from minitron.parallel import runtime

        return runtime.on_main(collect, root, log)
    return {"zero_shot": zero, "distilled": todo}
