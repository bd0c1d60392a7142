"""`minitron search` on the tiny model: every candidate pruned, scored, distilled and ranked;
a killed search rerun repeats no candidate and ends with the same ranking; two shards plus
--collect rank as one unsharded search does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import clean_env, minitron, read_json, search_args


def args(teacher, calib, out, *extra):
    return search_args(teacher, calib, out, *extra)


def same_ranking(a, b, tol=1e-5):
    """Same candidates in the same order, losses equal to ``tol`` (groups distilled together
    equal each student alone to ~1e-6)."""
    ra, rb = (read_json(x / "ranking.json")["candidates"] for x in (a, b))
    assert [c["name"] for c in ra] == [c["name"] for c in rb]
    for x, y in zip(ra, rb):
        assert abs(x["distilled"] - y["distilled"]) <= tol and x["zero_shot"] == y["zero_shot"]
    return True


@pytest.fixture(scope="module")
def whole(tiny_models, calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "whole"
    res = minitron(args(tiny_models["llama-untied"], calib, out), timeout=1200)
    return out, res


def test_search_prunes_scores_distils_and_ranks_every_candidate(whole, tiny_models, calib):
    out, res = whole
    dry = minitron(args(tiny_models["llama-untied"], calib, out.with_name("dry"), "--dry-run"))
    names = [ln.split()[0] for ln in dry.stdout.splitlines() if ln.startswith("  h")]
    assert len(names) == 4 and not out.with_name("dry").exists()
    r = read_json(out / "ranking.json")
    assert sorted(c["name"] for c in r["candidates"]) == sorted(names)
    assert r["distilled"] == 4 and r["best"] == r["candidates"][0]["name"]
    losses = [c["distilled"] for c in r["candidates"]]
    assert losses == sorted(losses)
    for c in r["candidates"]:  # distillation changed every candidate (a random tiny teacher:
        assert c["distilled"] != c["zero_shot"], c  # its loss need not fall in 2 steps)
        d = read_json(out / "candidates" / c["name"] / "distilled.json")
        assert d["steps"] == 2 and d["checkpoint"].endswith("/final/" + c["name"])
        arch = read_json(out / "candidates" / c["name"] / "pruned" / "manifest.json")["arch"]
        assert {k: arch[k] for k in c["sizes"]} == c["sizes"]
    assert (out / "ranking.md").exists() and "Spearman" in (out / "ranking.md").read_text()
    groups = list(out.glob("distill/*"))  # done groups keep final weights, not resume state
    assert groups and all(
        (g / "final").is_dir() and not (g / "checkpoints").exists() for g in groups
    )
    # the distilled loss is the distillation's last validation, not measured twice: it
    # equals `minitron loss` on the final checkpoint over the same held-out windows
    best = read_json(out / "candidates" / r["best"] / "distilled.json")
    assert best["measured"].startswith("the distillation's validation") and best["loss_stderr"] > 0
    again = out.with_name("again.json")
    minitron(
        [
            "loss",
            "--model",
            best["checkpoint"],
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "data.seed=99",
            "split=valid",
            "num_samples=4",
            f"out={again}",
        ]
    )
    assert abs(read_json(again)["loss"] - best["loss"]) < 1e-5
    # a rerun does nothing and ranks the same
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("candidates/*/*.json")}
    minitron(args(tiny_models["llama-untied"], calib, out))
    assert {p: p.stat().st_mtime_ns for p in out.glob("candidates/*/*.json")} == stamps


def test_killed_search_repeats_no_candidate(whole, tiny_models, calib, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "minitron", *args(tiny_models["llama-untied"], calib, out)]
    proc = subprocess.Popen(
        cmd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and len(list(out.glob("candidates/*/zero_shot.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.glob("candidates/*/zero_shot.json")}
    assert len(done) >= 2 and not (out / "ranking.json").exists()
    minitron(args(tiny_models["llama-untied"], calib, out), timeout=1200)
    assert {p: p.stat().st_mtime_ns for p in done} == done  # not repeated
    assert same_ranking(out, whole[0])


def test_shards_and_collect_rank_as_one_search(whole, tiny_models, calib, tmp_path):
    out = tmp_path / "sharded"
    for i in (0, 1):
        res = minitron(
            args(tiny_models["llama-untied"], calib, out, f"--shard={i}/2"), timeout=1200
        )
        assert not (out / "ranking.json").exists(), res.stdout
    minitron(args(tiny_models["llama-untied"], calib, out, "--collect"))
    assert same_ranking(out, whole[0])
    groups = {read_json(p)["group"] for p in out.glob("candidates/*/distilled.json")}
    assert len(groups) == 2  # each shard distilled its own candidates together
    assert json.loads((out / "ranking.json").read_text())["distilled"] == 4
