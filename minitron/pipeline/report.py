"""``report.md`` of a ``minitron run``: architectures, before/after quality and speed, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from minitron.checkpoint.mcore import read_manifest
from minitron.models.arch import ModelArch
from minitron.models.params import count_params, describe_arch, human


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _curves(ctx, path: Path) -> bool:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn = False
    for st in ctx.cfg.students:
        f, tag = ctx.distill_metrics(st.name)
        if not f.is_file():
            continue
        rows = list(csv.DictReader(f.open()))
        kd = [(int(r["step"]), float(r[f"kd{tag}"])) for r in rows if r.get(f"kd{tag}")]
        val = [
            (int(r["step"]), float(r[f"val_loss{tag}"])) for r in rows if r.get(f"val_loss{tag}")
        ]
        if kd:
            a.plot(*zip(*kd), label=st.name)
            drawn = True
        if val:
            b.plot(*zip(*val), "o-", label=st.name)
    a.set_title("distillation loss (forward KL, training batches)")
    b.set_title("held-out LM loss of the student")
    for ax in (a, b):
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    _save(fig, path)
    return drawn


def _depth(ctx, prune_metrics: dict, path: Path) -> bool:
    plt = _pyplot()
    series = {n: m["candidates"] for n, m in prune_metrics.items() if m.get("candidates")}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, cands in series.items():
        metric = next(k for k in cands[0] if k != "layers")
        ax.plot(
            [c["layers"][0] for c in cands],
            [c[metric] for c in cands],
            "o-",
            ms=3,
            label=f"{name}: {metric} with the block dropped",
        )
        ax.set_ylabel(metric)
    ax.set_xlabel("first dropped layer")
    ax.set_title("depth search: every contiguous candidate block")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def recovered_fraction(pruned: float, distilled: float, teacher: float) -> float:
    """Share of the loss that pruning added which distillation took back:
    ``(pruned - distilled) / (pruned - teacher)`` (1: back to the teacher; 0: no better
    than pruned; negative: worse)."""
    return (pruned - distilled) / (pruned - teacher)


def _heldout_loss(ctx, name: str):
    from minitron.pipeline.workdir import eval_file

    f = eval_file(ctx, name)
    if not f.is_file():
        return None
    row = next((r for r in json.loads(f.read_text()) if r["metric"] == "loss"), None)
    return row["value"] if row else None


def recovery_lines(ctx) -> list[str]:
    """Per student: the fraction of the pruning gap distillation recovered on held-out text,
    measured against the teacher it distilled from (the corrected one when correction ran)."""
    teacher_name = "teacher (corrected)" if ctx.cfg.correct.enabled else "teacher"
    teacher = _heldout_loss(ctx, teacher_name)
    rows = []
    for st in ctx.cfg.students:
        pruned = _heldout_loss(ctx, f"{st.name} (pruned)")
        distilled = _heldout_loss(ctx, f"{st.name} (distilled)")
        if None in (teacher, pruned, distilled):
            continue
        gap = pruned - teacher
        cell = (
            f"{100 * recovered_fraction(pruned, distilled, teacher):.0f}%"
            if gap > 0
            else "- (pruning did not raise the loss)"
        )
        rows.append(f"| {st.name} | {pruned:.3f} | {distilled:.3f} | {teacher:.3f} | {cell} |")
    if not rows:
        return []
    return [
        "",
        "### Recovered by distillation",
        "",
        f"Held-out LM loss; the share of the gap that pruning opened which distillation "
        f"closed, (pruned - distilled) / (pruned - {teacher_name}).",
        "",
        f"| student | pruned | distilled | {teacher_name} | gap recovered |",
        "|---|---|---|---|---|",
        *rows,
    ]


def instruction_lines(ctx) -> list[str]:
    """The instruction-following table (``ifeval_mini`` through lm-eval's IFEval checkers)."""
    from minitron.eval.lm_tasks import IFEVAL_METRICS
    from minitron.pipeline.workdir import instruction_models, instructions_file

    rows = []
    for name in instruction_models(ctx):
        f = instructions_file(ctx, name)
        if not f.is_file():
            continue
        r = json.loads(f.read_text()).get("ifeval_mini", {})
        cells = []
        for m in IFEVAL_METRICS:
            v, se = r.get(f"{m},none"), r.get(f"{m}_stderr,none")
            cells.append(
                "-" if v is None else f"{v:.3f}" + (f" ± {se:.3f}" if isinstance(se, float) else "")
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    lm = ctx.cfg.eval.lm_eval
    n = lm.limit or "all"
    template = "each in the model's chat template" if lm.apply_chat_template else "plain"
    return [
        "",
        "### Instruction following",
        "",
        f"`{', '.join(lm.tasks)}` ({n} prompts, {template}, generation `{lm.gen_kwargs}`), "
        "scored by lm-eval's own IFEval "
        "checkers: the share of prompts whose every instruction is followed (prompt) and of "
        "instructions followed (instruction); loose also accepts the answer without its "
        "first or last line or markdown emphasis.",
        "",
        "| model | prompt, strict | instruction, strict | prompt, loose | instruction, loose |",
        "|---|---|---|---|---|",
        *rows,
    ]


def search_lines(ctx) -> list[str]:
    """Per searched student: the search's ranking table (``ranking.md``) and plot."""
    out = []
    for st in ctx.searched():
        d = ctx.search_dir(st.name)
        f = d / "ranking.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        s = st.search
        budget = next(
            f"{k.replace('_', ' ')} {getattr(s.budget, k)}"
            for k in ("params", "non_embedding_params", "fraction")
            if getattr(s.budget, k) is not None
        )
        out += [
            "",
            f"### Architecture search: {st.name}",
            "",
            f"`{st.name}` is the winner of a search (`{d.relative_to(ctx.work)}/`): "
            f"{len(r['candidates'])} architectures within the budget ({budget}, tolerance "
            f"{s.budget.tolerance}), each pruned and scored zero-shot; {r['distilled']} "
            f"distilled for {s.steps} steps with the run's distillation settings and ranked "
            f"by held-out loss after it. Winner: **{r['best']}** (h: hidden, f: MLP, a: heads, "
            "l: layers).",
            "",
            (d / "ranking.md").read_text().rstrip(),
        ]
        if (d / "ranking.png").is_file():
            out += ["", f"![search of {st.name}]({(d / 'ranking.png').relative_to(ctx.work)})"]
    return out


def write_report(ctx) -> Path:
    from minitron.pipeline.workdir import eval_file, models_to_evaluate

    work, cfg = ctx.work, ctx.cfg
    manifest = json.loads((work / "manifest.json").read_text())
    stages = manifest["stages"]
    figs = work / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# minitron run: {cfg.model}",
        "",
        f"Experiment directory `{work}`; created {manifest.get('created')}; minitron "
        f"{manifest['versions'].get('minitron')}, git {str(manifest['versions'].get('git_commit'))[:10]}, "
        f"torch {manifest['versions'].get('torch')}, megatron-core "
        f"{manifest['versions'].get('megatron-core')}. Layout tp={cfg.tp} pp={cfg.pp}, "
        f"{cfg.dtype}.",
        "",
        "## Architectures",
        "",
        "| model | architecture | total parameters | non-embedding | share of the teacher's non-embedding |",
        "|---|---|---|---|---|",
    ]
    teacher = ModelArch.from_dict(read_manifest(ctx.imported)["arch"])
    base = count_params(teacher)["non_embedding"]
    archs = [("teacher", teacher)] + [
        (s.name, ModelArch.from_dict(read_manifest(ctx.pruned(s.name))["arch"]))
        for s in cfg.students
    ]
    for name, a in archs:
        n = count_params(a)
        lines.append(
            f"| {name} | {describe_arch(a)} | {n['total']:,} ({human(n['total'])}) | "
            f"{n['non_embedding']:,} | {100 * n['non_embedding'] / base:.1f}% |"
        )
    prune_metrics = stages.get("prune", {}).get("metrics", {})
    for name, m in prune_metrics.items():
        if m.get("dropped_layers"):
            lines.append(f"\n`{name}` drops layers {m['dropped_layers']}.")
    lines += search_lines(ctx)
    lines += [
        "",
        "## Quality",
        "",
        f"Held-out LM loss on the {ctx.eval_split} share of the "
        "data"
        + (" (text no stage trained on or chose anything with)" if ctx.eval_split == "test" else "")
        + ".",
        "",
        "| model | held-out LM loss | " + " | ".join(t.name for t in cfg.eval.tasks) + " |",
        "|---|---|" + "---|" * len(cfg.eval.tasks),
    ]
    for name in models_to_evaluate(ctx):
        f = eval_file(ctx, name)
        if not f.is_file():
            continue
        rows = json.loads(f.read_text())
        loss = next((r for r in rows if r["metric"] == "loss"), None)
        cells = [f"{loss['value']:.3f} ± {loss['stderr']:.3f}" if loss else "-"]
        for t in cfg.eval.tasks:
            r = next((r for r in rows if r["task"] == t.name and r["metric"] == "acc"), None)
            cells.append(f"{r['value']:.3f} ± {r['stderr']:.3f} (n={r['n']})" if r else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += recovery_lines(ctx)
    lines += instruction_lines(ctx)
    bench = work / "bench" / "bench.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        from minitron.bench.summary import mark

        lines += [
            "",
            "## Speed",
            "",
            f"{b['device']}, {b['dtype']}, {b['threads']} threads, prompt "
            f"{b['prompt_length']} tokens, {b['decode_tokens']} decoded tokens; speed-up over "
            f"the {b['baseline']}. Medians of {b.get('rounds', 1)} round(s), the models' "
            'order rotating between rounds; "unstable": the rounds disagreed by more '
            "than 20% (a busy machine), so that figure says little.",
            "",
            "| model | backend | batch | prefill tokens/s | decode tokens/s | prefill x | decode x |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in b["speedups"]:
            v = b["results"][s["model"]][s["backend"]]["results"][str(s["batch"])]
            lines.append(
                f"| {s['model']} | {s['backend']} | {s['batch']} | "
                f"{v['prefill_tokens_per_s']:.0f} | {v['decode_tokens_per_s']:.1f} | "
                f"{mark(s['prefill'], s.get('prefill_unstable', False))} | "
                f"{mark(s['decode'], s.get('decode_unstable', False))} |"
            )
        lines += ["", "![speed-ups](bench/bench.png)"]
    lines += ["", "## Plots", ""]
    if _curves(ctx, figs / "distill_curves.png"):
        lines.append("![distillation curves](figures/distill_curves.png)")
    if _depth(ctx, prune_metrics, figs / "depth_search.png"):
        lines.append("\n![depth search](figures/depth_search.png)")
    lines += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    for name, s in stages.items():
        if name == "report":  # this page: still being written
            continue
        lines.append(f"| {name} | {s.get('status')} | {s.get('seconds', 0):.0f} |")
    total = sum(s.get("seconds", 0) for s in stages.values())
    lines += [
        "",
        f"Total: {total / 60:.1f} minutes (stages of this run and earlier, resumed, runs).",
        "",
        "Reproduce: `minitron run --config <this config>` (the config is in "
        "`manifest.json`); rerunning skips finished stages.",
        "",
    ]
    out = work / "report.md"
    out.write_text("\n".join(lines))
    return out
