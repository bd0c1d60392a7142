"""``minitron run``: the whole recipe in one experiment directory, resumable.

    minitron run                                   # the embedded default (SmolLM2-135M, CPU)
    minitron run --config examples/llama-3.1-8b/run_width.yaml --dry-run
    torchrun --nproc_per_node 8 -m minitron run --config examples/llama-3.1-8b/run_width.yaml
    sbatch launch/slurm.sbatch examples/llama-3.1-8b/run_width.yaml

Stages: import -> (correct) -> score -> (search) -> prune -> distill -> (align) -> eval ->
export -> bench -> report. A rerun skips finished stages and resumes an interrupted one; a stage
whose settings changed runs again, and so does everything after it. ``stages=[...]``
runs a subset; ``--dry-run`` prints the plan, the architectures with their parameter
counts, and the token and time budget.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from minitron.checkpoint.load import describe_source
from minitron.config.run import STAGES, RunConfig
from minitron.models.params import count_params, describe_arch, human
from minitron.parallel import runtime
from minitron.pipeline import stages as S
from minitron.pipeline.manifest import Manifest, now, stage_hash
from minitron.pipeline.workdir import Ctx

DISABLED = {
    "correct": lambda c: not c.correct.enabled,
    "search": lambda c: not any(s.search for s in c.students),
    "align": lambda c: not c.align.enabled,
    "bench": lambda c: not c.bench.enabled,
}


def plan(cfg: RunConfig, manifest: Manifest) -> list[tuple[str, str, str]]:
    """(stage, hash, action) with action in done | skip | run | resume | rerun | not selected."""
    out, prev = [], ""
    for st in STAGES:
        sec = S.section(cfg, st)
        h = prev if sec is None else stage_hash(sec, prev)
        prev = h
        rec = manifest.stage(st)
        if cfg.stages is not None and st not in cfg.stages:
            action = "not selected"
        elif st in DISABLED and DISABLED[st](cfg):
            action = "skip"
        elif manifest.is_done(st, h):
            action = "done"
        elif manifest.was_started(st, h):
            action = "resume"
        elif rec:
            action = "rerun"
        else:
            action = "run"
        out.append((st, h, action))
    return out


def budget(cfg: RunConfig, teacher, students: dict, searches: dict | None = None) -> list[str]:
    """Tokens and a rough time from FLOP counts (6 N per trained token, 2 N per forward token;
    a search's candidates counted at the largest one's size)."""
    nt = count_params(teacher)["total"]
    lines, flops = [], 0.0
    if cfg.correct.enabled:
        s = cfg.correct.schedule
        tok = s.steps * s.global_batch_size * cfg.data.seq_length
        flops += 6 * nt * tok
        lines.append(f"teacher correction: {tok:,} tokens ({human(tok)})")
    flops += 2 * nt * cfg.score.num_samples * cfg.data.seq_length
    d = cfg.distill.schedule
    for st in cfg.students:
        if st.search is None or not searches:
            continue
        archs = list(searches[st.name].values())
        kept = min(st.search.top_k or len(archs), len(archs))
        tok = st.search.steps * d.global_batch_size * cfg.data.seq_length
        groups = -(-kept // st.search.group_size)
        flops += tok * (6 * kept * count_params(archs[0])["total"] + 2 * groups * nt)
        lines.append(
            f"search of {st.name}: {len(archs)} candidates, {kept} distilled for "
            f"{tok:,} tokens each ({human(tok)}) = {st.search.steps} steps x "
            f"{d.global_batch_size} x {cfg.data.seq_length}, in {groups} group(s)"
        )
    for name, a in students.items():
        ns = count_params(a)["total"]
        tok = d.steps * d.global_batch_size * cfg.data.seq_length
        flops += tok * (6 * ns + 2 * nt)
        lines.append(
            f"distillation of {name}: {tok:,} tokens ({human(tok)}) = {d.steps} steps x "
            f"{d.global_batch_size} x {cfg.data.seq_length}"
        )
    hours = flops / cfg.flops_per_second / 3600
    lines.append(
        f"about {flops:.2e} FLOPs for correction, scoring and distillation: ~{hours:.2f} "
        f"h at {cfg.flops_per_second:.1e} FLOP/s (a rough floor: evaluation, depth search "
        "and I/O come on top)"
    )
    return lines


RUNS = ("run", "resume", "rerun")  # plan actions of a stage that will run


def check_inputs(cfg: RunConfig, steps: list) -> None:
    """Every file that a stage which will run reads, checked before the first stage (a missing
    input fails here, not after import and prepare). Stages that are done, skipped or not
    selected read nothing, so their inputs are not checked."""
    from minitron.align.data import check_rows
    from minitron.config.schema import check_inputs as check_corpora

    runs = {st for st, _, action in steps if action in RUNS}
    if "prepare" in runs:
        check_corpora(cfg.data.inputs, "data.inputs")
    if "align" in runs:
        for key, kind in (("sft", "sft"), ("preference", "preferences")):
            check_rows(getattr(cfg.align, key).data, kind, f"align.{key}.data")


def preflight(cfg: RunConfig, steps: list) -> tuple:
    """Inputs, stage configs, the teacher's and every student's architecture, checked before
    any stage runs: a missing input or an impossible target fails here, naming the key
    (``data.inputs[i]``, ``students[i].target.<field>``)."""
    from minitron.config.sections import stage_config
    from minitron.errors import ConfigError
    from minitron.models.builder import check_layout
    from minitron.recipes.prune import check_target

    check_inputs(cfg, steps)
    check_stage_configs(cfg)
    try:
        teacher, _, tok_dir = describe_source(cfg.model, tokenizer=cfg.tokenizer or None)
    except ConfigError as e:
        raise ConfigError("tokenizer" if e.field == "tokenizer" else "model", e.message) from None
    check_layout(teacher, cfg.tp, cfg.pp)
    runs = {st for st, _, action in steps if action in RUNS}
    if "prepare" in runs and cfg.data.eod_token is not None:
        from minitron.data.tokenizer import load_tokenizer, token_id

        token_id(load_tokenizer(str(tok_dir)), cfg.data.eod_token, "data.eod_token")
    loss = cfg.distill.loss
    if loss.kind == "topk_kl" and loss.topk > teacher.vocab_size:
        raise ConfigError(
            "distill.loss.topk",
            f"{loss.topk} is more than the vocabulary "
            f"({teacher.vocab_size} tokens); give topk <= {teacher.vocab_size}",
        )
    students, searches = {}, {}
    winners = searched_winners(cfg, steps)
    for i, s in enumerate(cfg.students):
        if s.search is not None:
            try:
                searches[s.name] = searched_archs(cfg, s, teacher)
            except ConfigError as e:
                raise ConfigError(f"students[{i}].search.{e.field}", e.message) from None
            # the largest candidate stands for the winner until the search has run
            found = searches[s.name]
            students[s.name] = found.get(winners.get(s.name, ""), next(iter(found.values())))
            if not s.search.space.hf_compatible and (
                "hf" in cfg.export.formats or cfg.bench.enabled
            ):
                raise ConfigError(
                    f"students[{i}].search.space.hf_compatible",
                    "false lets the search pick a hidden size that transformers refuses for "
                    "the heads, so the HF export and the benchmark could fail; set it true, "
                    "or drop hf from export.formats and disable bench",
                )
            continue
        pc = stage_config(
            s,
            model=cfg.model,
            out="-",
            scores=None,
            tp=cfg.tp,
            pp=cfg.pp,
            dry_run=True,
            overwrite=True,
            progress=False,
        )
        try:
            students[s.name] = check_target(teacher, pc)
        except ConfigError as e:
            raise ConfigError(f"students[{i}].{e.field}", e.message) from None
        a = students[s.name]
        if (
            "hf" in cfg.export.formats or cfg.bench.enabled
        ) and a.hidden_size % a.num_attention_heads:
            # transformers 5 validates LlamaConfig: hidden_size must divide by the heads even
            # when head_dim is given, so the HF export (and the benchmark, which runs it)
            # could not be loaded
            heads = a.num_attention_heads
            raise ConfigError(
                f"students[{i}].target.hidden_size",
                f"{a.hidden_size} is not a multiple of the {heads} attention heads: "
                "transformers refuses such a Llama config, so the HF export and "
                f"the benchmark would fail; use a multiple of {heads} (e.g. "
                f"{a.hidden_size // heads * heads} or "
                f"{(a.hidden_size // heads + 1) * heads}), or prune heads too",
            )
    return teacher, students, searches


def searched_winners(cfg: RunConfig, steps: list) -> dict:
    """{student: the candidate its search ranked first}, when the search stage is done."""
    from minitron.pipeline.search import winner

    if ("search", "done") not in {(st, action) for st, _, action in steps}:
        return {}
    ctx = Ctx(cfg=cfg, work=Path(cfg.workdir), log=lambda s: None, main=False)
    return {s.name: winner(ctx, s.name) for s in cfg.students if s.search is not None}


def searched_archs(cfg: RunConfig, st, teacher) -> dict:
    """{name: architecture} of the candidates the search of student ``st`` will try, largest
    first (a budget that admits none fails here, naming the key)."""
    from minitron.config.loader import validate
    from minitron.config.prune import PruneConfig, TargetConfig
    from minitron.pipeline.search import search_config
    from minitron.recipes.prune import check_target
    from minitron.recipes.search import candidates

    ctx = Ctx(cfg=cfg, work=Path(cfg.workdir), log=lambda s: None, main=False)
    sc = validate(search_config(ctx, st, model=cfg.model))
    found, _ = candidates(sc, lambda s: None)
    return {
        c.name: check_target(
            teacher,
            PruneConfig(model=cfg.model, out="-", target=TargetConfig(**c.target(teacher))),
        )
        for c in found
    }


def check_stage_configs(cfg: RunConfig) -> list:
    """Build and validate every training stage's config now, so a bad value fails before
    the first stage runs rather than after import and prepare (the field is named as the
    stage sees it)."""
    from minitron.config.loader import validate
    from minitron.errors import ConfigError

    ctx = Ctx(cfg=cfg, work=Path(cfg.workdir), log=lambda s: None, main=False)
    out = []
    for key, name, stage_cfg in S.training_configs(ctx):
        try:
            out.append((name, validate(stage_cfg)))
        except ConfigError as e:
            raise ConfigError(f"{key}.{e.field}", f"({name}) {e.message}") from None
    return out


def dry_run(cfg: RunConfig, steps: list, log) -> dict:
    teacher, students, searches = preflight(cfg, steps)
    winners = searched_winners(cfg, steps)
    log(f"plan for {cfg.workdir}:")
    for st, h, action in steps:
        log(f"  {st:<9} {action:<13} {h}")
    log("\narchitectures:")
    n = count_params(teacher)
    log(
        f"  teacher   {describe_arch(teacher)}\n            {n['total']:,} total ({human(n['total'])}), "
        f"{n['non_embedding']:,} non-embedding ({human(n['non_embedding'])})"
    )
    for name, a in students.items():
        m = count_params(a)
        if name in searches:
            which = (
                f"{winners[name]}, the winner of its search over {len(searches[name])} candidates:"
                if name in winners
                else f"the winner of a search over {len(searches[name])} candidates; the "
                "largest, which the budget and memory plans assume:"
            )
            log(f"  {name:<9} {which}")
        log(
            f"  {name:<9} {describe_arch(a)}\n            {m['total']:,} total ({human(m['total'])}), "
            f"{m['non_embedding']:,} non-embedding ({human(m['non_embedding'])}), "
            f"{100 * m['non_embedding'] / n['non_embedding']:.1f}% of the teacher's"
        )
    log("\nbudget:")
    for line in budget(cfg, teacher, students, searches):
        log(f"  {line}")
    plans = memory_plans(cfg, teacher, students, log, searches)
    return {
        "plan": steps,
        "students": {k: v.to_dict() for k, v in students.items()},
        "searches": {k: len(v) for k, v in searches.items()},
        "memory": plans,
    }


def memory_plans(cfg: RunConfig, teacher, students: dict, log, searches=None) -> dict:
    """The memory plan per GPU of every training stage (printed), each checked against
    ``gpu_memory_gb``: the first that does not fit is refused, naming its largest part."""
    from minitron.errors import ConfigError
    from minitron.train import memory
    from minitron.train.plan import stage_plan

    out, refused = {}, None
    for name, sc in check_stage_configs(cfg):
        kind = name.split(".")[0]
        if kind == "correct":
            p = stage_plan(sc, [("teacher", teacher, sc.mode)])
        elif kind == "search":  # a group of candidates, each as large as the largest
            upper = next(iter((searches or {})[name.split(".", 1)[1]].values()))
            p = stage_plan(
                sc,
                [(n, upper, "full") for n in sc.student_names()],
                [("teacher", teacher)],
                loss_kind="kd",
                loss_chunk_tokens=sc.loss.chunk_size,
            )
        elif kind == "distill":
            who = [name.split(".", 1)[1]] if "." in name else sc.student_names()
            p = stage_plan(
                sc,
                [(n, students[n], "full") for n in who],
                [("teacher", teacher)],
                loss_kind="kd",
                loss_chunk_tokens=sc.loss.chunk_size,
            )
        else:
            arch = students[name.split(".")[1]]
            pref = sc.algorithm != "sft"
            p = stage_plan(
                sc,
                [("policy", arch, "full")],
                [("reference", arch)] if pref else [],
                seq_length=sc.seq_length,
                rows_per_sample=2 if pref else 1,
            )
        log(f"\nmemory plan per GPU, {name}:\n{p.format(cfg.gpu_memory_gb)}")
        out[name] = p.to_dict()
        try:
            memory.check(p, cfg.gpu_memory_gb)
        except ConfigError as e:
            refused = refused or (name, e)
    if refused is not None:
        raise ConfigError(refused[1].field, f"({refused[0]}) {refused[1].message}")
    return out


def main(cfg: RunConfig, log=print) -> dict:
    work = Path(cfg.workdir)
    manifest = Manifest(work, dataclasses.asdict(cfg))
    steps = plan(cfg, manifest)
    if cfg.dry_run:
        return dry_run(cfg, steps, log)
    runtime.check_world(cfg.tp, cfg.pp)
    preflight(cfg, steps)
    lay = runtime.init(cfg.tp, cfg.pp)
    ctx = Ctx(cfg=cfg, work=work, log=log if lay.is_main else (lambda s: None), main=lay.is_main)
    ran = []
    for st, h, action in steps:
        if action in ("done", "not selected"):
            continue
        if action == "skip":
            if lay.is_main and not manifest.is_done(st, h):
                manifest.update(st, status="skipped", hash=h, seconds=0.0)
            continue
        if action == "rerun" and lay.is_main:
            log(
                f"[run] {st}: settings changed since the last run; running it (and what follows) again"
            )
            S.clean(ctx, st)
        runtime.barrier()
        if lay.is_main:
            log(f"[run] {st} ({action}) ...")
            manifest.update(st, status="running", hash=h, started=now())
        t0 = time.perf_counter()
        try:
            result = S.STAGE_FUNCS[st](ctx)
        except BaseException as e:
            if lay.is_main:
                manifest.update(
                    st,
                    status="failed",
                    error=f"{type(e).__name__}: {e}"[:500],
                    seconds=time.perf_counter() - t0,
                )
            raise
        if lay.is_main:
            manifest.update(
                st,
                status="skipped" if result.get("skipped") else "done",
                finished=now(),
                seconds=round(time.perf_counter() - t0, 1),
                outputs=result.get("outputs", []),
                metrics=result.get("metrics", {}),
            )
        ran.append(st)
        runtime.barrier()
    if lay.is_main:
        if ran:
            log(f"[run] done: {work / 'report.md'}")
        else:
            log(f"[run] {work} is up to date: nothing to do")
    return {"ran": ran}
