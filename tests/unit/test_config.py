"""Config loading: YAML + flags + key=value, and errors that name the field and the fix."""

import pytest

from minitron import cli
from minitron.config import loader, schema
from minitron.errors import ConfigError

from helpers import ROOT


def err(fn, *a, **k) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        fn(*a, **k)
    return e.value


def test_precedence_defaults_yaml_flags_overrides(tmp_path):
    y = tmp_path / "imp.yaml"
    y.write_text("hf: from-yaml\nout: " + str(tmp_path / "o") + "\ntp: 2\ndtype: bfloat16\n")
    cfg = loader.load(schema.ImportConfig, y, ["pp=2"], {"hf": "from-flag"})
    assert (cfg.hf, cfg.tp, cfg.pp, cfg.dtype) == ("from-flag", 2, 2, "bfloat16")
    assert cfg.vocab_pad_multiple == 1024  # default kept


def test_cli_flags_map_to_keys(tmp_path):
    name, cfg = cli.parse(
        ["import", "--hf", "x", "--out", str(tmp_path / "o"), "--tp", "2", "--overwrite", "pp=2"]
    )
    assert name == "import" and (cfg.hf, cfg.tp, cfg.pp, cfg.overwrite) == ("x", 2, 2, True)
    name, cfg = cli.parse(
        [
            "data",
            "prepare",
            "--input",
            "builtin:news",
            "--input",
            "builtin:wiki",
            "--tokenizer",
            "t",
            "--out",
            str(tmp_path),
        ]
    )
    assert name == "data prepare" and cfg.inputs == ["builtin:news", "builtin:wiki"]


def test_unknown_key_lists_valid_keys(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "tpp=2"])
    assert e.field == "tpp" and "valid keys here" in e.message and "tp" in e.message


def test_nested_unknown_key_and_nested_validation():
    e = err(loader.load, schema.LossConfig, None, ["model=m", "data.paths=[x]", "data.seqlen=3"])
    assert e.field == "data.seqlen" and "seq_length" in e.message
    e = err(
        loader.load, schema.LossConfig, None, ["model=m", "data.paths=[x]", "data.seq_length=0"]
    )
    assert e.field == "data.seq_length" and ">= 1" in e.message
    e = err(
        loader.load, schema.LossConfig, None, ["model=m", "data.paths=[a,b]", "data.weights=[1.0]"]
    )
    assert e.field == "data.weights" and "one weight per path" in e.message


def test_wrong_type_names_field(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "tp=two"])
    assert e.field == "tp" and "invalid value" in e.message


def test_required_value_missing():
    e = err(loader.load, schema.ImportConfig, None, ["hf=a"])
    assert e.field == "out" and "required" in e.message


def test_invalid_choice_lists_choices(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "dtype=fp8"])
    assert e.field == "dtype" and "float32, bfloat16, float16" in e.message


def test_existing_output_refused_before_work(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}"])
    assert e.field == "out" and "overwrite=true" in e.message


def test_missing_files_named(tmp_path):
    e = err(
        loader.load,
        schema.PrepareConfig,
        None,
        [f"inputs=[{tmp_path}/none.jsonl]", "tokenizer=t", f"out={tmp_path}/o"],
    )
    assert e.field == "inputs[0]" and "does not exist" in e.message
    e = err(
        loader.load,
        schema.PrepareConfig,
        None,
        ["inputs=[builtin:nope]", "tokenizer=t", f"out={tmp_path}/o"],
    )
    assert "builtin:NAME" in e.field and "wiki" in e.message
    e = err(loader.load, schema.ExportConfig, None, [f"ckpt={tmp_path}", f"out={tmp_path}/x"])
    assert e.field == "ckpt" and "manifest.json" in e.message
    e = err(loader.load, schema.ImportConfig, tmp_path / "none.yaml")
    assert e.field == "--config"


def test_bad_override_syntax():
    e = err(cli.parse, ["params", "--hf-config", "x", "hidden_size"])
    assert "key=value" in e.message


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_field_is_documented(command):
    rows = loader.describe(cli.COMMANDS[command].schema)
    assert rows
    for key, _, _, text in rows:
        assert len(text) > 10, f"{command}: {key} has no doc"


def test_run_checks_every_stage_config_before_the_first_stage(tiny_models, tmp_path):
    """A bad value of a later stage (correct.mode) stops `minitron run` before import."""
    from helpers import minitron

    work = tmp_path / "work"
    res = minitron(
        [
            "run",
            "--workdir",
            str(work),
            f"model={tiny_models['llama-untied']}",
            "correct.enabled=true",
            "correct.mode=bogus",
        ],
        check=False,
    )
    assert res.returncode == 2
    assert "correct.mode" in res.stderr and "bogus" in res.stderr
    assert not (work / "checkpoints").exists() and not (work / "data").exists()


def test_run_tree_is_the_union_of_the_stage_configs():
    """Every section of `minitron run`'s config is a stage's own config: the same fields, types,
    docs and defaults, less the fields the run sets (each with what it sets them to), plus the
    run's own; and every key of every stage it runs is either in the tree or set by the run."""
    import dataclasses
    import typing

    from minitron.config.run import RunConfig
    from minitron.config.search import SearchConfig
    from minitron.config.sections import SECTIONS, sections_in

    found = [s for _, s in sections_in(RunConfig) + sections_in(SearchConfig)]
    assert set(map(id, found)) == {id(s) for s in SECTIONS.values()}  # all reachable
    stages = {s.stage.__name__ for s in SECTIONS.values()}
    assert stages >= {
        "CorrectConfig",
        "ScoreConfig",
        "PruneConfig",
        "DistillConfig",
        "AlignConfig",
        "EvalConfig",
        "LmEvalConfig",
        "ExportConfig",
        "BenchConfig",
        "PrepareConfig",
    }
    for cls, sec in SECTIONS.items():
        mine = {f.name: f for f in dataclasses.fields(cls)}
        theirs = {f.name: f for f in dataclasses.fields(sec.stage)}
        assert set(mine) == (set(theirs) - set(sec.owned)) | set(sec.extra), cls.__name__
        assert all(len(why) > 2 for why in sec.owned.values())
        h_mine, h_theirs = typing.get_type_hints(cls), typing.get_type_hints(sec.stage)
        for name in set(mine) & set(theirs) - set(sec.extra):
            assert h_mine[name] == h_theirs[name], (cls.__name__, name)
            assert mine[name].metadata == theirs[name].metadata, (cls.__name__, name)
            if name not in sec.defaults:
                assert loader._default(mine[name]) == loader._default(theirs[name]), name


def test_a_stage_hyperparameter_is_a_run_key(tmp_path):
    """Keys no run field used to expose (the SFT learning rate, the preference beta, the eval
    batch size, the KD chunk) are set from the run's YAML and reach the stage configs."""
    from pathlib import Path

    from minitron.config.run import RunConfig
    from minitron.pipeline import stages as S
    from minitron.pipeline.workdir import Ctx

    cfg = loader.load(
        RunConfig,
        str(ROOT / "examples/smollm2/run.yaml"),
        [
            "align.enabled=true",
            "align.sft.optim.lr=3e-4",
            "align.preference.beta=0.3",
            "eval.batch_size=5",
            "distill.loss.chunk_size=512",
            "data.heldout_samples=3",
            "score.seed=7",
        ],
    )
    ctx = Ctx(cfg=cfg, work=Path(tmp_path), log=lambda s: None, main=True)
    sft, pref = S.align_configs(ctx, cfg.students[0])
    assert (sft.optim.lr, sft.algorithm, pref.beta, pref.algorithm) == (3e-4, "sft", 0.3, "rpo")
    d = S.distill_config(ctx)
    assert d.loss.chunk_size == 512 and d.validation.loss.num_samples == 3
    assert S.prune_config(ctx, cfg.students[1]).depth.loss.num_samples == 3


def test_minitron_run_without_config_is_the_embedded_default():
    """`minitron run` with no --config reads examples/smollm2/run.yaml (through the package's
    link to it), whose values are the embedded default's."""
    from pathlib import Path

    import yaml

    name, cfg = cli.parse(["run", "--dry-run"])
    spelled = yaml.safe_load((ROOT / "examples/smollm2/run.yaml").read_text())
    assert cfg.model == spelled["model"] == "smollm2-135m"
    assert [s.name for s in cfg.students] == [s["name"] for s in spelled["students"]]
    assert cfg.distill.optim.lr == spelled["distill"]["optim"]["lr"]
    assert cfg.distill.schedule.steps == spelled["distill"]["schedule"]["steps"]
    link = Path(cli.__file__).parent / cli.COMMANDS["run"].default_config
    assert link.resolve() == (ROOT / "examples/smollm2/run.yaml").resolve()


SEARCHED_BEST = (
    "students=[{name: width, target: {hidden_size: 432}}, "
    "{name: best, search: {budget: {fraction: 0.5}, steps: 7, group_size: 3}}]"
)


def test_a_search_distils_with_the_runs_distillation_settings(tmp_path):
    """A searched student's search takes the run's teacher, scores, data and distill section,
    with its own steps and group size, and validates only at the end."""
    from pathlib import Path

    from minitron.config.run import RunConfig
    from minitron.pipeline.search import search_config
    from minitron.pipeline.workdir import Ctx

    cfg = loader.load(
        RunConfig,
        str(ROOT / "examples/smollm2/run.yaml"),
        [SEARCHED_BEST, "distill.loss.kind=reverse_kl", f"workdir={tmp_path}"],
    )
    ctx = Ctx(cfg=cfg, work=Path(tmp_path), log=lambda s: None, main=True)
    sc = loader.validate(search_config(ctx, cfg.students[1]))
    d, run = sc.distill, cfg.distill
    assert (d.optim, d.loss.kind) == (run.optim, "reverse_kl")
    assert d.schedule.global_batch_size == run.schedule.global_batch_size
    assert (d.schedule.steps, d.schedule.eval_every, d.group_size) == (7, 0, 3)
    assert sc.out == str(tmp_path / "search" / "best") and sc.scores == str(tmp_path / "scores")
    assert sc.model == str(tmp_path / "checkpoints" / "teacher") and sc.shard is None


def test_a_run_without_a_search_keeps_the_hashes_it_had():
    """The search stage, and a student's search field, change no hash of a run that searches
    nothing: its finished stages stay done. The plan's hashes equal those of the pipeline
    before the stage existed (no search stage, students without the field)."""
    import dataclasses

    from minitron.config.run import STAGES, RunConfig
    from minitron.pipeline import stages as S
    from minitron.pipeline.manifest import stage_hash
    from minitron.pipeline.run import plan

    cfg = loader.load(RunConfig, str(ROOT / "examples/smollm2/run.yaml"))

    class Empty:
        def stage(self, name):
            return {}

        def is_done(self, *a):
            return False

        def was_started(self, *a):
            return False

    got = {st: h for st, h, _ in plan(cfg, Empty())}
    old, prev = {}, ""
    for st in STAGES:
        if st == "search":
            continue
        sec = S.section(cfg, st)
        if st == "prune":
            sec = [
                {k: v for k, v in dataclasses.asdict(s).items() if k != "search"}
                for s in cfg.students
            ]
        prev = old[st] = stage_hash(sec, prev)
    assert {k: v for k, v in got.items() if k != "search"} == old
    with_search = loader.load(RunConfig, str(ROOT / "examples/smollm2/run.yaml"), [SEARCHED_BEST])
    searched = {st: h for st, h, _ in plan(with_search, Empty())}
    assert searched["search"] != searched["score"] == got["score"]


def test_overrides_reach_list_items_and_unset_sections(tmp_path):
    """`students[0].search.steps=7` sets a list item's key; `data.paths=[...]` creates an
    unset optional section; a wrong key inside a list item is named with its valid keys."""
    from minitron.config.prune import ScoreConfig
    from minitron.config.run import RunConfig

    cfg = loader.load(
        RunConfig,
        str(ROOT / "examples/smollm2/run.yaml"),
        [SEARCHED_BEST, "students[1].search.steps=9", "students.0.target.hidden_size=384"],
    )
    assert cfg.students[1].search.steps == 9 and cfg.students[0].target.hidden_size == 384
    score = loader.load(
        ScoreConfig, None, ["model=m", f"out={tmp_path}/s", f"data.paths=[{tmp_path}]"]
    )
    assert score.data.paths == [str(tmp_path)]
    e = err(loader.load, RunConfig, str(ROOT / "examples/smollm2/run.yaml"), ["students[0].nam=x"])
    assert e.field == "students[0].nam" and "valid keys here" in e.message and "name" in e.message
