"""The ``search`` stage of ``minitron run``: students chosen by an architecture search.

    students:
      - {name: best, search: {budget: {fraction: 0.5}, steps: 20, top_k: 4}}

For each such student, ``minitron search`` runs in ``<workdir>/search/<name>/`` on the run's
(corrected) teacher, score file and data, distilling the kept candidates with the run's
``distill`` settings for ``search.steps`` steps; the prune stage then takes the winner's
pruned checkpoint as the student (the very model the search ranked), and the run goes on
as for any student. The search resumes candidate by candidate (docs/search.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

from minitron.config.search import SearchConfig, SearchDistillConfig
from minitron.config.sections import SECTIONS, stage_config
from minitron.errors import MinitronError
from minitron.pipeline.workdir import Ctx


def distill_section(ctx: Ctx, st) -> SearchDistillConfig:
    """The search's short distillation: the run's distill section, ``search.steps`` steps,
    validated only at the end (the value the ranking reads)."""
    run = ctx.cfg.distill
    fields = [f.name for f in dataclasses.fields(SECTIONS[SearchDistillConfig].stage)]
    owned = SECTIONS[SearchDistillConfig].owned
    values = {f: copy.deepcopy(getattr(run, f)) for f in fields if f not in owned}
    d = SearchDistillConfig(**values)
    d.group_size = st.search.group_size
    steps = st.search.steps
    d.schedule = dataclasses.replace(
        d.schedule, steps=steps, eval_every=0, save_every=min(d.schedule.save_every, steps)
    )
    return d


def search_config(ctx: Ctx, st, model: str | None = None) -> SearchConfig:
    """The ``minitron search`` config of searched student ``st``."""
    return stage_config(
        st.search,
        model=model or str(ctx.teacher()),
        scores=str(ctx.work / "scores"),
        out=str(ctx.search_dir(st.name)),
        data=ctx.data(),
        distill=distill_section(ctx, st),
        shard=None,
        collect=False,
        **ctx.cfg.training_values(dry_run=False, progress=False),
    )


def stage_search(ctx: Ctx) -> dict:
    from minitron.config.loader import validate
    from minitron.recipes import search

    searched = ctx.searched()
    if not searched:
        return {"skipped": True}
    metrics = {}
    for st in searched:
        ctx.log(f"[run] searching the architecture of {st.name} ...")
        res = search.main(validate(search_config(ctx, st)), ctx.log)
        metrics[st.name] = {
            "best": res["best"],
            "candidates": len(res["candidates"]),
            "distilled": res["distilled"],
            "spearman_zero_shot_vs_distilled": res["spearman_zero_shot_vs_distilled"],
        }
    return {"outputs": [str(ctx.search_dir(s.name)) for s in searched], "metrics": metrics}


def winner(ctx: Ctx, name: str) -> str:
    """The candidate the search of student ``name`` ranked first."""
    f = ctx.search_dir(name) / "ranking.json"
    best = json.loads(f.read_text()).get("best") if f.is_file() else None
    if best is None:
        raise MinitronError(
            f"{f} names no winner: the search stage of {name} has not finished; run it "
            "(stages=[search]) first"
        )
    return best


def take_winner(ctx: Ctx, name: str) -> dict:
    """Student ``name`` := its search's winner, pruned as the search pruned it (a hard-linked
    copy of that checkpoint); returns the prune record the search's prune wrote."""
    from minitron.checkpoint import atomic
    from minitron.checkpoint.mcore import read_manifest
    from minitron.parallel import runtime

    best = winner(ctx, name)
    src: Path = ctx.search_dir(name) / "candidates" / best / "pruned"
    runtime.on_main(atomic.copy_dir, src, ctx.pruned(name), "checkpoint")  # every rank waits
    ctx.log(f"[run] {name} is the search's winner {best}")
    return dict(read_manifest(src).get("extra", {}), searched=best)
