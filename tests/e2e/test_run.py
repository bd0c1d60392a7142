"""`minitron run` end to end on a tiny model: report, idempotence, resume after kill -9,
reruns after a change, and errors before any stage."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from helpers import clean_env, minitron, read_json


@pytest.fixture(scope="module")
def config(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    corpus = root / "c.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"Story {i}: the quick fox jumps over {i} dogs."})
            for i in range(300)
        )
    )
    (root / "run.yaml").write_text(f"""
model: {tiny_models["llama-untied"]}
data: {{inputs: [{corpus}], eod_token: null, seq_length: 16, split: "90,10,0"}}
score: {{num_samples: 8}}
students:
  - {{name: width, target: {{hidden_size: 48, ffn_hidden_size: 64, num_attention_heads: 2}}}}
  - {{name: depth, target: {{num_layers: 2}}, depth: {{criterion: lm_loss}}}}
distill:
  optim: {{lr: 1.0e-3, warmup_steps: 1}}
  schedule: {{steps: 6, global_batch_size: 4, micro_batch_size: 2, eval_every: 3, save_every: 2}}
eval:
  tasks: [{{name: winogrande, path: "builtin:winogrande", limit: 8}}]
  loss_samples: 4
bench: {{batch_sizes: [1], prompt_length: 8, decode_tokens: 2, repeats: 1}}
""")
    return root / "run.yaml"


def run(config, work, *extra, check=True):
    return minitron(
        ["run", "--config", str(config), f"workdir={work}", *extra], check=check, timeout=1200
    )


def final_weights(work, tmp, name="width"):
    minitron(["export", "--ckpt", str(work / "distill" / "final" / name), "--out", str(tmp)])
    return load_file(str(tmp / "model.safetensors"))


@pytest.fixture(scope="module")
def complete(config, tmp_path_factory):
    work = tmp_path_factory.mktemp("complete") / "w"
    run(config, work)
    return work


def test_run_writes_manifest_report_and_figures(complete):
    m = read_json(complete / "manifest.json")
    assert [s for s, v in m["stages"].items() if v["status"] == "done"] == [
        "import",
        "prepare",
        "score",
        "prune",
        "distill",
        "eval",
        "export",
        "bench",
        "report",
    ]
    assert m["stages"]["correct"]["status"] == "skipped" and m["versions"]["torch"]
    report = (complete / "report.md").read_text()
    for text in (
        "## Architectures",
        "width (distilled)",
        "depth (pruned)",
        "## Speed",
        "figures/distill_curves.png",
        "figures/depth_search.png",
        "### Recovered by distillation",
        "| width |",
        "Medians of 1 round(s)",
    ):
        assert text in report, text
    assert (complete / "figures" / "distill_curves.png").stat().st_size > 1000
    assert (complete / "export" / "width" / "hf" / "config.json").is_file()


def test_second_run_does_nothing(config, complete):
    before = read_json(complete / "manifest.json")["stages"]
    res = run(config, complete)
    assert "up to date: nothing to do" in res.stdout
    assert read_json(complete / "manifest.json")["stages"] == before


def test_changed_stage_reruns_it_and_what_follows(config, complete, tmp_path):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(complete, work)
    before = read_json(work / "manifest.json")["stages"]
    res = run(config, work, "eval.loss_samples=2", "bench.enabled=false")
    after = read_json(work / "manifest.json")["stages"]
    assert "settings changed" in res.stdout
    for stage in ("import", "prepare", "score", "prune", "distill"):
        assert after[stage]["finished"] == before[stage]["finished"], stage
    assert after["eval"]["finished"] != before["eval"]["finished"]
    assert after["bench"]["status"] == "skipped"


def test_alignment_brings_the_instruction_following_set_into_the_report(config, complete, tmp_path):
    import shutil

    pytest.importorskip("langdetect")
    work = tmp_path / "w"
    shutil.copytree(complete, work)
    sft, pref = tmp_path / "sft.jsonl", tmp_path / "pref.jsonl"
    sft.write_text(
        "".join(
            json.dumps({"prompt": f"Say {i}.", "response": f"{i} dogs."}) + "\n" for i in range(16)
        )
    )
    pref.write_text(
        "".join(
            json.dumps({"prompt": f"Count {i}.", "chosen": f"{i} foxes.", "rejected": "No."}) + "\n"
            for i in range(16)
        )
    )
    run(
        config,
        work,
        "align.enabled=true",
        "align.sft.schedule.steps=2",
        "align.preference.schedule.steps=1",
        "align.preference.rounds=1",
        f"align.sft.data={sft}",
        f"align.preference.data={pref}",
        "eval.lm_eval.limit=3",
        "eval.lm_eval.gen_kwargs=max_gen_toks=4",
        "bench.enabled=false",
    )
    m = read_json(work / "manifest.json")["stages"]
    assert m["align"]["status"] == "done" and m["eval"]["status"] == "done"
    report = (work / "report.md").read_text()
    assert "### Instruction following" in report and "`ifeval_mini` (3 prompts" in report
    table = report.split("### Instruction following")[1].split("\n\n")[2].splitlines()
    assert [r.split(" | ")[0] for r in table[2:]] == [
        "| teacher",
        "| width (distilled)",
        "| width (aligned)",
        "| depth (distilled)",
        "| depth (aligned)",
    ]
    for name in ("teacher", "width_aligned"):
        got = read_json(work / "eval" / f"{name}.ifeval.json")["ifeval_mini"]
        assert 0.0 <= got["prompt_level_strict_acc,none"] <= 1.0


def test_killed_in_distillation_resumes_to_the_same_weights(config, complete, tmp_path):
    work = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minitron", "run", "--config", str(config), f"workdir={work}"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = work / "distill" / "metrics.csv"  # both students, distilled together
    deadline = time.time() + 600
    while time.time() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 4:  # header + 3 steps
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_json(work / "manifest.json")["stages"]["distill"]["status"] == "running"
    res = run(config, work)
    assert "distill (resume)" in res.stdout
    a = final_weights(complete, tmp_path / "a")
    b = final_weights(work, tmp_path / "b")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


SEARCH = (
    "search: {budget: {fraction: 0.6, tolerance: 0.15}, steps: 2, top_k: 3, group_size: 2, "
    "heldout_samples: 4, space: {hidden_size: {step: 16, max_shrink: 0.5}, "
    "ffn_hidden_size: {step: 32, max_shrink: 0.5}, num_attention_heads: {max_shrink: 0.5}, "
    "num_layers: {step: 1, max_shrink: 0.5}}}"
)
SEARCHED = (
    "students=[{name: width, target: {hidden_size: 48, ffn_hidden_size: 64, "
    "num_attention_heads: 2}}, {name: best, " + SEARCH + "}]"
)


def test_searched_student_is_the_search_winner(config, complete, tmp_path):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(complete, work)
    dry = run(config, work, SEARCHED, "dry_run=true")
    assert "the winner of a search over 4 candidates" in dry.stdout, dry.stdout
    assert "search of best: 4 candidates, 3 distilled" in dry.stdout
    assert "memory plan per GPU, search.best" in dry.stdout
    before = read_json(work / "manifest.json")["stages"]
    run(config, work, SEARCHED, "bench.enabled=false")
    m = read_json(work / "manifest.json")["stages"]
    for stage in ("import", "prepare", "score"):
        assert m[stage]["finished"] == before[stage]["finished"], stage
    assert m["search"]["status"] == "done" and m["prune"]["status"] == "done"
    best = m["search"]["metrics"]["best"]["best"]
    ranking = read_json(work / "search" / "best" / "ranking.json")
    assert ranking["best"] == best and ranking["distilled"] == 3 and len(ranking["candidates"]) == 4
    # the student is the very checkpoint the search ranked first
    mine = read_json(work / "checkpoints" / "best" / "manifest.json")
    ranked = read_json(work / "search" / "best" / "candidates" / best / "pruned" / "manifest.json")
    assert mine["files"] == ranked["files"] and m["prune"]["metrics"]["best"]["searched"] == best
    sizes = read_json(work / "search" / "best" / "candidates" / best / "arch.json")["sizes"]
    assert {k: mine["arch"][k] for k in sizes} == sizes
    assert (work / "distill" / "final" / "best" / "manifest.json").is_file()
    report = (work / "report.md").read_text()
    for text in (
        "### Architecture search: best",
        f"Winner: **{best}**",
        "](search/best/ranking.png)",
        "| best (distilled) |",
        "Spearman rank correlation",
    ):
        assert text in report, text
    assert "up to date: nothing to do" in run(config, work, SEARCHED, "bench.enabled=false").stdout
    dry = run(config, work, SEARCHED, "bench.enabled=false", "dry_run=true")
    assert f"{best}, the winner of its search over 4 candidates" in dry.stdout, dry.stdout


@pytest.mark.parametrize(
    "override,text",
    [
        ("distill.schedule.stepz=3", "distill.schedule.stepz: unknown key"),
        (
            "students=[{name: b, target: {num_layers: 2}, " + SEARCH + "}]",
            "students[0].target: a searched student is the search's winner",
        ),
        (
            "students=[{name: b, search: {budget: {params: 10}}}]",
            "students[0].search.budget: no architecture of the space",
        ),
        ("score.num_samples=many", "score.num_samples: invalid value"),
        (
            "students=[{name: w, target: {num_attention_heads: 3}}]",
            "students[0].target.num_attention_heads: 3 is not a multiple of num_query_groups=2",
        ),
    ],
)
def test_bad_configs_fail_before_any_stage(config, tmp_path, override, text):
    res = run(config, tmp_path / "w", override, check=False)
    assert res.returncode == 2 and text in res.stderr, res.stderr
    assert not (tmp_path / "w").exists()
