"""Every config error before the first stage (issue 12, point 6): bad values fail at load, or
in ``minitron run``'s preflight, naming the key the user typed and the fix; nothing is
imported, prepared, loaded or trained first, and ``--dry-run`` reports the same errors."""

import json
import shutil

import pytest

from minitron import cli
from minitron.align.data import preference_messages, read_rows, sft_messages
from minitron.config import loader, run, schema, train
from minitron.errors import ConfigError, DataError
from minitron.pipeline import run as run_recipe

from helpers import ROOT, make_tiny_model, minitron

EMBEDDED = str(ROOT / "examples" / "smollm2" / "run.yaml")  # what `minitron run` reads


def err(fn, *a, **k) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        fn(*a, **k)
    return e.value


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_tokenizer):
    """A tiny HF model with its tokenizer: what ``minitron run`` imports."""
    d = make_tiny_model(tmp_path_factory.mktemp("teacher") / "tiny")
    for f in tiny_tokenizer.iterdir():
        shutil.copy2(f, d / f.name)
    return d


def run_yaml(tmp_path, teacher) -> str:
    """A run config that passes --dry-run on the tiny teacher (every input exists)."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "the quick brown fox"}) + "\n")
    y = tmp_path / "run.yaml"
    y.write_text(
        f"model: {teacher}\nworkdir: {tmp_path / 'work'}\n"
        f"data: {{inputs: [{corpus}], eod_token: '<eos>', seq_length: 32}}\n"
        "students: [{name: w, target: {ffn_hidden_size: 64}, width_method: magnitude}]\n"
        "bench: {enabled: false}\n"
    )
    return str(y)


def run_error(tmp_path, teacher, *overrides, dry_run=True) -> ConfigError:
    """The ConfigError of ``minitron run`` (in process) with these overrides, raised when the
    config loads (a section's values, checked as its stage checks them) or by the run's
    checks before the first stage; nothing written."""
    try:
        cfg = loader.load(
            run.RunConfig,
            run_yaml(tmp_path, teacher),
            [*overrides, f"dry_run={str(dry_run).lower()}"],
        )
    except ConfigError as e:
        return e
    e = err(run_recipe.main, cfg, log=lambda s: None)
    assert not (tmp_path / "work").exists(), "a stage ran before the error"
    return e


# ------------------------------------------------------------------ a. run's inputs


def test_run_checks_its_inputs_before_the_first_stage(tmp_path, teacher):
    res = minitron(
        ["run", "--config", run_yaml(tmp_path, teacher), "data.inputs=[/missing.jsonl]"],
        check=False,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "data.inputs[0]: /missing.jsonl does not exist" in res.stderr
    assert not (tmp_path / "work").exists(), "import/prepare ran before the error"
    # --dry-run reports the same error; so does every other file a selected stage reads
    e = run_error(tmp_path, teacher, "data.inputs=[/missing.jsonl]")
    assert e.field == "data.inputs[0]" and "does not exist" in e.message
    e = run_error(tmp_path, teacher, "data.inputs=[builtin:nope]")
    assert e.field == "data.inputs[0] (builtin:NAME)"
    e = run_error(tmp_path, teacher, "align.enabled=true", "align.preference.data=/missing.jsonl")
    assert e.field == "align.preference.data" and "does not exist" in e.message
    e = run_error(tmp_path, teacher, "align.enabled=true", "align.sft.data=builtin:preferences")
    assert e.field == "align.sft.data" and "builtin:sft" in e.message
    e = run_error(tmp_path, teacher, "data.eod_token=NOPE")
    assert e.field == "data.eod_token" and "not a token" in e.message
    e = run_error(tmp_path, teacher, "model=/missing")
    assert e.field == "model"
    # a width target transformers could not load (hidden not a multiple of the heads)
    e = run_error(tmp_path, teacher, "students=[{name: w, target: {hidden_size: 50}}]")
    assert e.field == "students[0].target.hidden_size" and "48 or 52" in e.message
    run_error_free = loader.load(
        run.RunConfig,
        run_yaml(tmp_path, teacher),
        [
            "students=[{name: w, target: {hidden_size: 50}}]",
            "export.formats=[trtllm]",
            "dry_run=true",
        ],
    )
    run_recipe.main(run_error_free, log=lambda s: None)  # no HF export, no benchmark: allowed
    # the stage configs built from the run config are checked too (kept from an earlier fix)
    for dry in (True, False):
        e = run_error(tmp_path, teacher, "correct.enabled=true", "correct.mode=bogus", dry_run=dry)
        assert e.field == "correct.mode" and "full, lora, norm" in e.message


def test_run_skips_checks_of_stages_that_will_not_run(tmp_path, teacher):
    cfg = loader.load(
        run.RunConfig,
        run_yaml(tmp_path, teacher),
        ["data.inputs=[/missing.jsonl]", "stages=[import]"],
    )
    steps = [(st, "h", "not selected" if st != "import" else "run") for st in run.STAGES]
    run_recipe.check_inputs(cfg, steps)  # prepare does not run: its inputs are not read


# ------------------------------------------------------------------ b. optimizer


DISTILL = ["student=s", "teacher=t", "out=o", "data.paths=[d]"]


@pytest.mark.parametrize(
    "override,field,text",
    [
        ("optim.lr=-1", "optim.lr", "must be > 0"),
        ("optim.lr=0", "optim.lr", "must be > 0"),
        ("optim.min_lr=-1", "optim.min_lr", "between 0 and lr"),
        ("optim.min_lr=1", "optim.min_lr", "between 0 and lr"),
        ("optim.beta1=2", "optim.beta1", "in [0, 1)"),
        ("optim.beta2=1", "optim.beta2", "in [0, 1)"),
        ("optim.eps=-1", "optim.eps", "must be > 0"),
        ("optim.clip_grad=-1", "optim.clip_grad", "0: no clipping"),
        ("optim.weight_decay=-1", "optim.weight_decay", "must be >= 0"),
        ("teacher_optim.beta1=-0.1", "teacher_optim.beta1", "in [0, 1)"),
    ],
)
def test_optimizer_ranges_fail_at_load(override, field, text):
    e = err(loader.load, train.DistillConfig, None, [*DISTILL, override])
    assert e.field == field and text in e.message, e
    # --dry-run parses the same config: the same error, before anything is loaded
    e = err(cli.parse, ["distill", "--dry-run", *DISTILL, override])
    assert e.field == field


def test_optimizer_ranges_in_run_and_correct():
    assert (
        err(loader.load, run.RunConfig, EMBEDDED, ["distill.optim.eps=0"]).field
        == "distill.optim.eps"
    )
    e = err(
        loader.load,
        train.CorrectConfig,
        None,
        ["model=m", "out=o", "data.paths=[d]", "optim.lr=-1"],
    )
    assert e.field == "optim.lr"


# ------------------------------------------------------------------ c. distillation loss


@pytest.mark.parametrize(
    "overrides,field,text",
    [
        (["loss.kind=jsd", "loss.beta=5"], "loss.beta", "(0, 1)"),
        (["loss.kind=jsd", "loss.beta=0"], "loss.beta", "(0, 1)"),
        (["loss.kind=jsd", "loss.beta=1"], "loss.beta", "(0, 1)"),
        (["loss.topk=8"], "loss.topk", "kind=topk_kl"),
        (["loss.kind=topk_kl", "loss.topk=-1"], "loss.topk", ">= 1"),
        (["loss.ce_weight=-1"], "loss.ce_weight", ">= 0"),
        (["loss.temperature=0"], "loss.temperature", "> 0"),
    ],
)
def test_loss_ranges_fail_at_load(overrides, field, text):
    e = err(loader.load, train.DistillConfig, None, [*DISTILL, *overrides])
    assert e.field == field and text in e.message, e
    assert err(cli.parse, ["distill", "--dry-run", *DISTILL, *overrides]).field == field
    e = err(loader.load, run.RunConfig, EMBEDDED, [f"distill.{o}" for o in overrides])
    assert e.field == f"distill.{field}"


def test_topk_larger_than_the_vocabulary_fails_in_run_preflight(tmp_path, teacher):
    e = run_error(tmp_path, teacher, "distill.loss.kind=topk_kl", "distill.loss.topk=100000")
    assert e.field == "distill.loss.topk" and "vocabulary" in e.message


# ------------------------------------------------------------------ d. preference rows


@pytest.mark.parametrize(
    "row,text",
    [
        ({"prompt": "Hi", "chosen": "Hello!", "rejected": ""}, "empty rejected answer"),
        ({"prompt": "Hi", "chosen": "  \n", "rejected": "Go away."}, "empty chosen answer"),
        ({"prompt": " ", "chosen": "Hello!", "rejected": "Go away."}, "empty prompt"),
        (
            {
                "chosen": "\n\nHuman: hi\n\nAssistant: ",
                "rejected": "\n\nHuman: hi\n\nAssistant: no",
            },
            "empty chosen answer",
        ),
        (
            {"prompt": "Hi", "chosen": [{"role": "assistant", "content": ""}], "rejected": "No."},
            "empty chosen answer",
        ),
    ],
)
def test_preference_rows_with_empty_text_are_data_errors(tmp_path, row, text):
    ok = {"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five."}
    f = tmp_path / "pref.jsonl"
    f.write_text(json.dumps(ok) + "\n" + json.dumps(row) + "\n")
    (w1, r1), (w2, r2) = read_rows(str(f))
    preference_messages(r1, w1)
    with pytest.raises(DataError, match=text) as e:
        preference_messages(r2, w2)
    assert str(e.value).startswith(f"{f}:2: ")
    with pytest.raises(DataError, match=f"{f}:2: .*empty response"):
        sft_messages({"prompt": "Hi", "response": " "}, f"{f}:2")


def test_run_preflight_reads_the_alignment_rows(tmp_path, teacher):
    f = tmp_path / "pref.jsonl"
    f.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello!", "rejected": ""}) + "\n")
    cfg = loader.load(
        run.RunConfig,
        run_yaml(tmp_path, teacher),
        ["align.enabled=true", f"align.preference.data={f}", "dry_run=true"],
    )
    with pytest.raises(DataError, match=f"{f}:1: empty rejected answer"):
        run_recipe.main(cfg, log=lambda s: None)
    assert not (tmp_path / "work").exists()


# ------------------------------------------------------------------ e. result files


def test_result_file_that_is_a_directory_fails_at_load(tmp_path):
    d = tmp_path / "existing"
    d.mkdir()
    task = [{"name": "w", "path": "builtin:winogrande"}]
    e = err(loader.load, schema.EvalConfig, None, ["model=m", f"out={d}"], {"tasks": task})
    assert e.field == "out" and "is a directory" in e.message and "eval.json" in e.message
    assert (
        err(cli.parse, ["eval", "--model", "m", "--task", "winogrande", "--out", str(d)]).field
        == "out"
    )
    e = err(loader.load, schema.LossConfig, None, ["model=m", "data.paths=[x]", f"out={d}"])
    assert e.field == "out" and "is a directory" in e.message
    e = err(loader.load, schema.LmEvalConfig, None, ["model=m", "tasks=[t]", f"out={d}"])
    assert e.field == "out" and "is a directory" in e.message
    f = tmp_path / "file"
    f.write_text("x")
    e = err(loader.load, schema.EvalConfig, None, ["model=m", f"out={f}/r.json"], {"tasks": task})
    assert e.field == "out" and "is a file" in e.message
    e = err(
        loader.load,
        schema.BenchConfig,
        None,
        [f"out={f}"],
        {"models": [{"name": "a", "path": str(tmp_path)}]},
    )
    assert e.field == "out" and "is a file" in e.message
    # an existing result file is still replaced, as before
    assert loader.load(
        schema.EvalConfig, None, ["model=m", f"out={f}"], {"tasks": task}
    ).out == str(f)


# ------------------------------------------------------------------ f. the audit


def test_values_that_crashed_late_or_did_nothing_fail_early(tmp_path, teacher):
    cases = [
        (run.RunConfig, ["score.seq_aggregation=bogus"], "score.seq_aggregation"),
        (run.RunConfig, ["score.micro_batch_size=0"], "score.micro_batch_size"),
        (run.RunConfig, ["bench.backends=[bogus]"], "bench.backends"),
        (run.RunConfig, ["bench.batch_sizes=[0]"], "bench.batch_sizes"),
        (run.RunConfig, ["bench.repeats=0"], "bench.repeats"),
        (run.RunConfig, ["eval.loss_samples=0"], "eval.loss_samples"),
        (run.RunConfig, ["export.tp=0"], "export.tp"),
        (run.RunConfig, ["data.split=100,0,0"], "data.split"),
        (run.RunConfig, ["data.split=a,b"], "data.split"),
        (train.DistillConfig, [*DISTILL, "schedule.eval_every=-1"], "schedule.eval_every"),
        (train.DistillConfig, [*DISTILL, "data.weights=[-1.0]"], "data.weights"),
        (train.DistillConfig, [*DISTILL, "data.split=100,0,0"], "data.split"),
        (
            train.CorrectConfig,
            ["model=m", "out=o", "data.paths=[d]", "data.split=0,1,0"],
            "data.split",
        ),
        (
            train.CorrectConfig,
            ["model=m", "out=o", "data.paths=[d]", "mode=lora", "lora_alpha=0"],
            "lora_alpha",
        ),
        (schema.EvalConfig, ["model=m", "tasks=[{path: builtin:nope}]"], "tasks[0].path"),
        (
            schema.EvalConfig,
            ["model=m", f"tasks=[{{path: {tmp_path}/missing.txt}}]"],
            "tasks[0].path",
        ),
    ]
    for schema_cls, overrides, field in cases:
        base = EMBEDDED if schema_cls is run.RunConfig else None
        assert err(loader.load, schema_cls, base, overrides).field == field, overrides
    # bench checks every model before exporting or measuring the first one
    from minitron.recipes import bench

    cfg = loader.load(
        schema.BenchConfig,
        None,
        [f"out={tmp_path}/b"],
        {
            "models": [
                {"name": "a", "path": str(tmp_path)},
                {"name": "b", "path": str(tmp_path / "no")},
            ]
        },
    )
    assert err(bench.main, cfg, log=lambda s: None).field == "models[1].path"
    assert not (tmp_path / "b").exists()
    # loss, eval and score look for their prepared data before loading the model
    from minitron.recipes import evaluate, loss

    cfg = loader.load(schema.LossConfig, None, ["model=/no/model", "data.paths=[/missing]"])
    assert err(loss.main, cfg, log=lambda s: None).field == "data.paths[0]"
    cfg = loader.load(
        schema.EvalConfig, None, ["model=/no/model", "loss=[{name: a, data: {paths: [/missing]}}]"]
    )
    assert err(evaluate.main, cfg, log=lambda s: None).field == "loss[0].data.paths[0]"
    cfg = loader.load(
        schema.EvalConfig, None, [f"model={teacher}", "tasks=[{limit: 2}]", "skip_layers=[100]"]
    )
    assert err(evaluate.main, cfg, log=lambda s: None).field == "skip_layers"


# ------------------------------------------------------------------ standalone training stages


def test_training_stages_check_sources_data_and_sizes_before_loading(
    tmp_path, teacher, monkeypatch
):
    """distill / correct / align: a missing source is named by its key, missing data and
    impossible sizes fail before any model loads (load_model is made to fail the test)."""
    from minitron.checkpoint import load
    from minitron.config import align as align_cfg
    from minitron.recipes import correct, distill

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(correct, "load_model", no_load)
    monkeypatch.setattr(distill, "load_model", no_load)
    monkeypatch.setattr(load, "load_model", no_load)
    out = str(tmp_path / "o")
    base = {"out": out, "data": {"paths": [str(tmp_path / "nodata")]}}
    e = err(
        distill.main,
        loader.load(
            train.DistillConfig,
            values={**base, "student": str(tmp_path / "missing"), "teacher": str(teacher)},
        ),
    )
    assert e.field == "student"
    e = err(
        distill.main,
        loader.load(
            train.DistillConfig, values={**base, "student": str(teacher), "teacher": str(teacher)}
        ),
    )
    assert e.field == "data.paths[0]" and "nodata" in e.message
    prepared = tmp_path / "d"
    minitron(
        [
            "data",
            "prepare",
            "--input",
            "builtin:news",
            "--tokenizer",
            str(teacher),
            "--out",
            str(prepared),
        ]
    )
    ok = {"out": out, "data": {"paths": [str(prepared)]}}
    e = err(
        distill.main,
        loader.load(
            train.DistillConfig,
            values={
                **ok,
                "student": str(teacher),
                "teacher": str(teacher),
                "loss": {"kind": "topk_kl", "topk": 100000},
            },
        ),
    )
    assert e.field == "loss.topk" and "vocabulary" in e.message
    e = err(
        correct.main,
        loader.load(
            train.CorrectConfig,
            values={**ok, "model": str(teacher), "mode": "lora", "lora_rank": 100000},
        ),
    )
    assert e.field == "lora_rank"
    e = err(
        loader.load,
        align_cfg.AlignConfig,
        values={"model": str(teacher), "out": out, "data": str(tmp_path / "missing.jsonl")},
    )
    assert e.field == "data" and "does not exist" in e.message
    rows = tmp_path / "p.jsonl"
    rows.write_text(json.dumps({"prompt": "Q?", "chosen": "yes", "rejected": " "}) + "\n")
    from minitron.recipes import align

    for dry in (True, False):
        with pytest.raises(DataError, match="p.jsonl:1: empty rejected"):
            align.main(
                loader.load(
                    align_cfg.AlignConfig,
                    values={
                        "model": str(teacher),
                        "out": out,
                        "data": str(rows),
                        "algorithm": "dpo",
                        "dry_run": dry,
                    },
                )
            )
    assert not (tmp_path / "o").exists()
