"""The stages of ``minitron run``: each calls a command's recipe with configs derived from the
run config and writes into the experiment directory (its layout: ``workdir.py``)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from minitron.config.loader import validate
from minitron.config.run import RunConfig
from minitron.pipeline.workdir import (
    Ctx,
    eval_file,
    instruction_models,
    instructions_file,
    models_to_evaluate,
)


def _run(recipe, cfg, ctx: Ctx):
    return recipe.main(validate(cfg), ctx.log)


# ------------------------------------------------------------------ stages


def stage_import(ctx: Ctx) -> dict:
    from minitron.config.schema import ImportConfig
    from minitron.recipes import import_hf

    c = ctx.cfg
    _run(
        import_hf,
        ImportConfig(
            hf=c.model,
            tokenizer=c.tokenizer,
            out=str(ctx.imported),
            tp=c.tp,
            pp=c.pp,
            dtype=c.dtype,
            overwrite=True,
        ),
        ctx,
    )
    return {"outputs": [str(ctx.imported)]}


def stage_prepare(ctx: Ctx) -> dict:
    from minitron.config.schema import PrepareConfig
    from minitron.parallel import runtime
    from minitron.recipes import prepare

    d = ctx.cfg.data
    cfg = validate(
        PrepareConfig(
            inputs=list(d.inputs),
            tokenizer=str(ctx.imported),
            out=str(ctx.data_dir),
            eod_token=d.eod_token,
        )
    )
    index = runtime.on_main(prepare.main, cfg, ctx.log)
    return {
        "outputs": [str(ctx.data_dir)],
        "metrics": {"tokens": sum(x["tokens"] for x in index["datasets"])},
    }


def correct_config(ctx: Ctx):
    from minitron.config.train import CorrectConfig

    c = ctx.cfg
    return CorrectConfig(
        model=str(ctx.imported),
        out=str(ctx.work / "correct"),
        data=ctx.data(),
        mode=c.correct.mode,
        optim=c.correct.optim,
        schedule=c.correct.schedule,
        **c.training_values(dry_run=False, progress=False),
    )


def stage_correct(ctx: Ctx) -> dict:
    from minitron.recipes import correct

    if not ctx.cfg.correct.enabled:
        return {"skipped": True}
    _run(correct, correct_config(ctx), ctx)
    return {"outputs": [str(ctx.teacher())]}


def stage_score(ctx: Ctx) -> dict:
    from minitron.config.prune import ScoreConfig
    from minitron.recipes import score

    c, s = ctx.cfg, ctx.cfg.score
    _run(
        score,
        ScoreConfig(
            model=str(ctx.teacher()),
            out=str(ctx.work / "scores"),
            data=ctx.data(),
            num_samples=s.num_samples,
            micro_batch_size=s.micro_batch_size,
            seq_aggregation=s.seq_aggregation,
            batch_aggregation=s.batch_aggregation,
            block_scores=c.pp == 1,
            tp=c.tp,
            pp=c.pp,
            dtype=c.dtype,
            overwrite=True,
            progress=False,
        ),
        ctx,
    )
    return {"outputs": [str(ctx.work / "scores")]}


def stage_prune(ctx: Ctx) -> dict:
    from minitron.config.prune import PruneConfig
    from minitron.recipes import prune

    c = ctx.cfg
    out = {}
    for st in c.students:
        depth = dataclasses.replace(st.depth)
        if depth.criterion == "lm_loss" and depth.loss is None:
            depth.loss = ctx.heldout(8, seed=1234)
        record = _run(
            prune,
            PruneConfig(
                model=str(ctx.teacher()),
                out=str(ctx.pruned(st.name)),
                target=st.target,
                scores=str(ctx.work / "scores"),
                width_method=st.width_method,
                depth=depth,
                tp=c.tp,
                pp=c.pp,
                overwrite=True,
                progress=False,
            ),
            ctx,
        )
        out[st.name] = {
            "dropped_layers": record["depth"]["drop"],
            "candidates": record["depth"].get("candidates", []),
        }
    return {"outputs": [str(ctx.pruned(s.name)) for s in c.students], "metrics": out}


def distill_config(ctx: Ctx, st=None):
    """One student's run (``st``), or every student's in one run (``st=None``)."""
    from minitron.config.train import DistillConfig, ValidationConfig

    c = ctx.cfg
    if st is None:
        who = dict(
            students=[str(ctx.pruned(s.name)) for s in c.students],
            names=[s.name for s in c.students],
            out=str(ctx.work / "distill"),
        )
    else:
        who = dict(student=str(ctx.pruned(st.name)), out=str(ctx.work / "distill" / st.name))
    return DistillConfig(
        **who,
        teacher=str(ctx.teacher()),
        data=ctx.data(),
        loss=c.distill.loss,
        optim=c.distill.optim,
        schedule=c.distill.schedule,
        validation=ValidationConfig(loss=ctx.heldout(8, seed=1234)),
        **c.training_values(dry_run=False, progress=False),
    )


def stage_distill(ctx: Ctx) -> dict:
    from minitron.recipes import distill

    if ctx.cfg.distill.together:
        _run(distill, distill_config(ctx), ctx)
    else:
        for st in ctx.cfg.students:
            _run(distill, distill_config(ctx, st), ctx)
    return {"outputs": [str(ctx.distilled(s.name)) for s in ctx.cfg.students]}


def align_configs(ctx: Ctx, st) -> tuple:
    """(SFT config, preference config) of one student."""
    from minitron.config.align import AlignConfig
    from minitron.config.train import OptimConfig, ScheduleConfig

    c, a = ctx.cfg, ctx.cfg.align
    base = ctx.work / "align" / st.name
    common = c.training_values(dry_run=False, progress=False)
    sft = AlignConfig(
        model=str(ctx.distilled(st.name)),
        out=str(base / "sft"),
        algorithm="sft",
        data=a.sft_data,
        optim=OptimConfig(lr=1e-4, min_lr=1e-5, warmup_steps=5),
        schedule=ScheduleConfig(steps=a.sft_steps, global_batch_size=8, micro_batch_size=4),
        **common,
    )
    pref = AlignConfig(
        model=str(base / "sft" / "final" / "policy"),
        out=str(base / "pref"),
        algorithm=a.algorithm,
        data=a.preference_data,
        rounds=a.rounds,
        schedule=ScheduleConfig(steps=a.preference_steps, global_batch_size=8, micro_batch_size=4),
        **common,
    )
    return sft, pref


def stage_align(ctx: Ctx) -> dict:
    from minitron.recipes import align

    if not ctx.cfg.align.enabled:
        return {"skipped": True}
    for st in ctx.cfg.students:
        for cfg in align_configs(ctx, st):
            _run(align, cfg, ctx)
    return {"outputs": [str(ctx.aligned(s.name)) for s in ctx.cfg.students]}


def training_configs(ctx: Ctx) -> list:
    """Every training stage's config, built as the stages will build them (validated by the
    caller before the first stage runs)."""
    c = ctx.cfg
    out = [("correct", correct_config(ctx))] if c.correct.enabled else []
    if c.distill.together:
        out += [("distill", distill_config(ctx))]
    else:
        out += [(f"distill.{st.name}", distill_config(ctx, st)) for st in c.students]
    if c.align.enabled:
        for st in c.students:
            sft, pref = align_configs(ctx, st)
            out += [(f"align.{st.name}.sft", sft), (f"align.{st.name}.{pref.algorithm}", pref)]
    return out


def stage_eval(ctx: Ctx) -> dict:
    from minitron.config.schema import EvalConfig
    from minitron.recipes import evaluate

    c = ctx.cfg
    for name, path in models_to_evaluate(ctx).items():
        _run(
            evaluate,
            EvalConfig(
                model=str(path),
                tasks=list(c.eval.tasks),
                loss=[ctx.heldout(c.eval.loss_samples, split=ctx.eval_split)],
                tp=c.tp,
                pp=c.pp,
                dtype=c.dtype,
                out=str(eval_file(ctx, name)),
                progress=False,
            ),
            ctx,
        )
    if c.evaluates_instructions():
        from minitron.config.schema import LmEvalConfig
        from minitron.recipes import lm_eval

        for name, path in instruction_models(ctx).items():
            _run(
                lm_eval,
                LmEvalConfig(
                    model=str(path),
                    tasks=["ifeval_mini"],
                    limit=c.eval.instructions_limit,
                    apply_chat_template=True,
                    batch_size=8,
                    tp=c.tp,
                    pp=c.pp,
                    dtype=c.dtype,
                    gen_kwargs=f"max_gen_toks={c.eval.instructions_max_tokens}",
                    out=str(instructions_file(ctx, name)),
                ),
                ctx,
            )
    return {"outputs": [str(ctx.work / "eval")]}


def stage_export(ctx: Ctx) -> dict:
    from minitron.config.schema import ExportConfig
    from minitron.recipes import export

    c, outs = ctx.cfg, []
    for st in c.students:
        for fmt in c.export.formats:
            out = ctx.work / "export" / st.name / fmt
            _run(
                export,
                ExportConfig(
                    ckpt=str(ctx.final(st.name)),
                    out=str(out),
                    format=fmt,
                    tp=c.export.trtllm_tp if fmt == "trtllm" else 1,
                    overwrite=True,
                ),
                ctx,
            )
            outs.append(str(out))
    return {"outputs": outs}


def stage_bench(ctx: Ctx) -> dict:
    from minitron.config.schema import BenchConfig, BenchModelConfig
    from minitron.parallel import runtime
    from minitron.recipes import bench

    c, b = ctx.cfg, ctx.cfg.bench
    if not b.enabled:
        return {"skipped": True}
    models = [BenchModelConfig(name="teacher", path=str(ctx.imported))]
    models += [BenchModelConfig(name=st.name, path=str(ctx.final(st.name))) for st in c.students]
    cfg = validate(
        BenchConfig(
            models=models,
            out=str(ctx.work / "bench"),
            backends=list(b.backends),
            batch_sizes=list(b.batch_sizes),
            prompt_length=b.prompt_length,
            decode_tokens=b.decode_tokens,
            repeats=b.repeats,
        )
    )
    runtime.on_main(bench.main, cfg, ctx.log)  # subprocesses per model: once, not per rank
    return {"outputs": [str(ctx.work / "bench")]}


def stage_report(ctx: Ctx) -> dict:
    from minitron.parallel import runtime
    from minitron.pipeline.report import write_report

    path = runtime.on_main(write_report, ctx)
    return {"outputs": [str(path)]}


STAGE_FUNCS = {
    "import": stage_import,
    "prepare": stage_prepare,
    "correct": stage_correct,
    "score": stage_score,
    "prune": stage_prune,
    "distill": stage_distill,
    "align": stage_align,
    "eval": stage_eval,
    "export": stage_export,
    "bench": stage_bench,
    "report": stage_report,
}


def section(cfg: RunConfig, stage: str):
    """The config a stage depends on (besides the stages before it)."""
    d = dataclasses.asdict(cfg)
    common = {"tp": d["tp"], "pp": d["pp"], "dtype": d["dtype"]}
    tok = {"tokenizer": d["tokenizer"]} if d["tokenizer"] else {}  # older runs: unchanged hash
    return {
        "import": {"model": d["model"], **tok, **common},
        "prepare": d["data"],
        "correct": d["correct"],
        "score": d["score"],
        "prune": d["students"],
        "distill": d["distill"],
        "align": d["align"],
        "eval": d["eval"],
        "export": d["export"],
        "bench": d["bench"],
        "report": {},
    }[stage]


def outputs(ctx: Ctx, stage: str) -> list[Path]:
    """What a stage writes (removed before it runs again with changed settings)."""
    w, names = ctx.work, [s.name for s in ctx.cfg.students]
    return {
        "import": [ctx.imported],
        "prepare": [ctx.data_dir],
        "correct": [w / "correct"],
        "score": [w / "scores"],
        "prune": [ctx.pruned(n) for n in names],
        "distill": [w / "distill"],
        "align": [w / "align"],
        "eval": [w / "eval"],
        "export": [w / "export"],
        "bench": [w / "bench"],
        "report": [w / "report.md", w / "figures"],
    }[stage]


def clean(ctx: Ctx, stage: str) -> None:
    for p in outputs(ctx, stage):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
