"""The stages of ``minitron run``: each calls a command's recipe with configs derived from the
run config and writes into the experiment directory (its layout: ``workdir.py``)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from minitron.config.loader import validate
from minitron.config.run import RunConfig
from minitron.config.sections import stage_config
from minitron.pipeline.search import stage_search
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
    from minitron.parallel import runtime
    from minitron.recipes import prepare

    d = ctx.cfg.data
    cfg = validate(
        stage_config(
            d,
            inputs=list(d.inputs),
            tokenizer=str(ctx.imported),
            out=str(ctx.data_dir),
            overwrite=False,
        )
    )
    index = runtime.on_main(prepare.main, cfg, ctx.log)
    return {
        "outputs": [str(ctx.data_dir)],
        "metrics": {"tokens": sum(x["tokens"] for x in index["datasets"])},
    }


def _training(ctx: Ctx) -> dict:
    """The run-level fields every training stage takes from the run."""
    return ctx.cfg.training_values(dry_run=False, progress=False)


def correct_config(ctx: Ctx):
    return stage_config(
        ctx.cfg.correct,
        model=str(ctx.imported),
        out=str(ctx.work / "correct"),
        data=ctx.data(),
        **_training(ctx),
    )


def stage_correct(ctx: Ctx) -> dict:
    from minitron.recipes import correct

    if not ctx.cfg.correct.enabled:
        return {"skipped": True}
    _run(correct, correct_config(ctx), ctx)
    return {"outputs": [str(ctx.teacher())]}


def stage_score(ctx: Ctx) -> dict:
    from minitron.recipes import score

    c = ctx.cfg
    cfg = stage_config(
        c.score,
        model=str(ctx.teacher()),
        out=str(ctx.work / "scores"),
        data=ctx.data(),
        tp=c.tp,
        pp=c.pp,
        dtype=c.dtype,
        overwrite=True,
        progress=False,
        block_scores=c.pp == 1,
    )
    _run(score, cfg, ctx)
    return {"outputs": [str(ctx.work / "scores")]}


def prune_config(ctx: Ctx, st):
    c = ctx.cfg
    cfg = stage_config(
        st,
        model=str(ctx.teacher()),
        out=str(ctx.pruned(st.name)),
        scores=str(ctx.work / "scores"),
        tp=c.tp,
        pp=c.pp,
        dry_run=False,
        overwrite=True,
        progress=False,
    )
    if cfg.depth.criterion == "lm_loss" and cfg.depth.loss is None:
        cfg.depth.loss = ctx.heldout(c.data.heldout_samples, seed=1234)
    return cfg


def stage_prune(ctx: Ctx) -> dict:
    from minitron.pipeline.search import take_winner
    from minitron.recipes import prune

    out = {}
    for st in ctx.cfg.students:
        if st.search is not None:
            record = take_winner(ctx, st.name)
        else:
            record = _run(prune, prune_config(ctx, st), ctx)
        out[st.name] = {
            "dropped_layers": record["depth"]["drop"],
            "candidates": record["depth"].get("candidates", []),
        }
        if "searched" in record:
            out[st.name]["searched"] = record["searched"]
    return {"outputs": [str(ctx.pruned(s.name)) for s in ctx.cfg.students], "metrics": out}


def distill_config(ctx: Ctx, st=None):
    """One student's run (``st``), or every student's in one run (``st=None``)."""
    c = ctx.cfg
    if st is None:
        who = dict(
            student="",
            students=[str(ctx.pruned(s.name)) for s in c.students],
            names=[s.name for s in c.students],
            out=str(ctx.work / "distill"),
        )
    else:
        who = dict(
            student=str(ctx.pruned(st.name)),
            students=[],
            names=[],
            out=str(ctx.work / "distill" / st.name),
        )
    cfg = stage_config(
        c.distill, **who, teacher=str(ctx.teacher()), data=ctx.data(), **_training(ctx)
    )
    if cfg.validation.loss is None:
        cfg.validation.loss = ctx.heldout(c.data.heldout_samples, seed=1234)
    return cfg


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
    a = ctx.cfg.align
    base = ctx.work / "align" / st.name
    sft = stage_config(
        a.sft,
        model=str(ctx.distilled(st.name)),
        out=str(base / "sft"),
        algorithm="sft",
        rounds=1,
        **_training(ctx),
    )
    pref = stage_config(
        a.preference,
        model=str(base / "sft" / "final" / "policy"),
        out=str(base / "pref"),
        **_training(ctx),
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
    """(the run's key of the section, a label, the config) of every training stage, built as
    the stages will build them (validated by the caller before the first stage runs); a
    search's group stands for every group of its candidates (placeholder paths)."""
    from minitron.pipeline.search import search_config
    from minitron.recipes.search import distill_config as group_config

    c = ctx.cfg
    out = [("correct", "correct", correct_config(ctx))] if c.correct.enabled else []
    for i, st in enumerate(c.students):
        if st.search is not None:
            sc = search_config(ctx, st)
            names = [f"candidate{k}" for k in range(st.search.group_size)]
            group = group_config(sc, names, ctx.search_dir(st.name))
            out.append((f"students[{i}].search", f"search.{st.name}", group))
    if c.distill.together:
        out += [("distill", "distill", distill_config(ctx))]
    else:
        out += [("distill", f"distill.{st.name}", distill_config(ctx, st)) for st in c.students]
    if c.align.enabled:
        for st in c.students:
            sft, pref = align_configs(ctx, st)
            out += [
                ("align.sft", f"align.{st.name}.sft", sft),
                ("align.preference", f"align.{st.name}.{pref.algorithm}", pref),
            ]
    return out


def stage_eval(ctx: Ctx) -> dict:
    from minitron.recipes import evaluate

    c, e = ctx.cfg, ctx.cfg.eval
    layout = dict(tp=c.tp, pp=c.pp, dtype=c.dtype)
    for name, path in models_to_evaluate(ctx).items():
        cfg = stage_config(
            e,
            model=str(path),
            loss=[ctx.heldout(e.loss_samples, split=ctx.eval_split)],
            skip_layers=[],
            out=str(eval_file(ctx, name)),
            progress=False,
            **layout,
        )
        _run(evaluate, cfg, ctx)
    if c.evaluates_instructions():
        from minitron.recipes import lm_eval

        for name, path in instruction_models(ctx).items():
            cfg = stage_config(
                e.lm_eval,
                model=str(path),
                out=str(instructions_file(ctx, name)),
                samples=None,
                **layout,
            )
            _run(lm_eval, cfg, ctx)
    return {"outputs": [str(ctx.work / "eval")]}


def stage_export(ctx: Ctx) -> dict:
    from minitron.recipes import export

    c, outs = ctx.cfg, []
    for st in c.students:
        for fmt in c.export.formats:
            out = ctx.work / "export" / st.name / fmt
            cfg = stage_config(
                c.export, ckpt=str(ctx.final(st.name)), out=str(out), format=fmt, overwrite=True
            )
            if fmt != "trtllm":  # tp: the TensorRT-LLM checkpoint's ranks
                cfg.tp = 1
            _run(export, cfg, ctx)
            outs.append(str(out))
    return {"outputs": outs}


def stage_bench(ctx: Ctx) -> dict:
    from minitron.config.schema import BenchModelConfig
    from minitron.parallel import runtime
    from minitron.recipes import bench

    c, b = ctx.cfg, ctx.cfg.bench
    if not b.enabled:
        return {"skipped": True}
    models = [BenchModelConfig(name="teacher", path=str(ctx.imported))]
    models += [BenchModelConfig(name=st.name, path=str(ctx.final(st.name))) for st in c.students]
    cfg = validate(stage_config(b, models=models, out=str(ctx.work / "bench")))
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
    "search": stage_search,
    "prune": stage_prune,
    "distill": stage_distill,
    "align": stage_align,
    "eval": stage_eval,
    "export": stage_export,
    "bench": stage_bench,
    "report": stage_report,
}


def section(cfg: RunConfig, stage: str):
    """The config a stage depends on (besides the stages before it); None: the stage is
    off and leaves the hashes after it as they were (the search stage without a searched
    student, so that runs from before it existed stay done)."""
    d = dataclasses.asdict(cfg)
    common = {"tp": d["tp"], "pp": d["pp"], "dtype": d["dtype"]}
    tok = {"tokenizer": d["tokenizer"]} if d["tokenizer"] else {}  # older runs: unchanged hash
    # a student without a search hashes as before searches existed
    students = [{k: v for k, v in s.items() if k != "search" or v} for s in d["students"]]
    searched = {s["name"]: s["search"] for s in d["students"] if s["search"]}
    search = None
    if searched:  # the search distils with the run's distillation settings
        distill = {k: v for k, v in d["distill"].items() if k != "together"}
        search = {"students": searched, "distill": distill, **common}
    return {
        "import": {"model": d["model"], **tok, **common},
        "prepare": d["data"],
        "correct": d["correct"],
        "score": d["score"],
        "search": search,
        "prune": students,
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
        "search": [w / "search"],
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
