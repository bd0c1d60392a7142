"""Faults a user meets: diverged weights, stale results, two writers, damaged or moved
run directories, overwrite onto the wrong directory. One test per problem of issue 12."""

import json
import shutil
import subprocess
import sys
import time

import pytest
import torch
from test_train import _distill_args, common

from helpers import clean_env, minitron, read_json


@pytest.fixture(scope="module")
def imported(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "ck"
    minitron(["import", "--hf", str(tiny_models["llama-untied"]), "--out", str(out)])
    return out


def _nan_checkpoint(imported, out, world):
    """A checkpoint holding a NaN, written past the save check (as another tool could)."""
    from unittest import mock

    from minitron.checkpoint import mcore

    model, manifest = mcore.load_checkpoint(imported)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    arch = mcore.ModelArch.from_dict(manifest["arch"])
    hf = json.loads((imported / "hf_config.json").read_text())
    with pytest.raises(Exception, match="NaN or inf"):  # our own save refuses
        mcore.save_checkpoint(
            model,
            out,
            arch=arch,
            hf_config=hf,
            tokenizer_src=imported / "tokenizer",
            dtype="float32",
        )
    with mock.patch.object(mcore, "check_finite", lambda *a: None):
        mcore.save_checkpoint(
            model,
            out,
            arch=arch,
            hf_config=hf,
            tokenizer_src=imported / "tokenizer",
            dtype="float32",
        )
    return out


def test_nothing_non_finite_is_saved_or_exported(imported, calib, tmp_path, world):
    bad = _nan_checkpoint(imported, tmp_path / "nan", world)
    res = minitron(["export", "--ckpt", str(bad), "--out", str(tmp_path / "hf")], check=False)
    assert res.returncode == 2 and "NaN or inf" in res.stderr, res.stderr[-1500:]
    assert not (tmp_path / "hf").exists()
    res = minitron(
        [
            "loss",
            "--model",
            str(bad),
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "num_samples=4",
        ],
        check=False,
    )
    assert res.returncode == 2 and "not finite" in res.stderr, res.stdout + res.stderr[-1500:]


def test_a_huge_learning_rate_never_leaves_a_nan_checkpoint(imported, calib, tmp_path):
    run = tmp_path / "run"
    res = minitron(
        [
            "distill",
            "--student",
            str(imported),
            "--teacher",
            str(imported),
            "--out",
            str(run),
            "optim.lr=1e6",
            "optim.clip_grad=0",
            "schedule.save_every=1",
            "max_skipped_steps=2",
            *common(calib, steps=6),
        ],
        check=False,
    )
    steps = sorted((run / "checkpoints").glob("step_*"))
    for ck in steps + sorted((run / "final").glob("*")):  # whatever was saved exports
        for model in [ck / "student"] if (ck / "student").is_dir() else [ck]:
            minitron(
                ["export", "--ckpt", str(model), "--out", str(tmp_path / "e" / model.parent.name)]
            )
    if res.returncode != 0:
        assert "not finite" in res.stderr or "non-finite" in res.stderr, res.stderr[-2000:]
        assert "last good checkpoint" in res.stderr


def test_a_finished_run_rerun_with_other_settings_is_refused(imported, calib, tmp_path):
    run = tmp_path / "run"
    args = [
        "distill",
        "--student",
        str(imported),
        "--teacher",
        str(imported),
        "--out",
        str(run),
        *common(calib, steps=2),
    ]
    minitron(args + ["optim.lr=1e-3"])
    assert "nothing to do" in minitron(args + ["optim.lr=1e-3", "schedule.log_every=2"]).stdout
    res = minitron(args + ["optim.lr=5e-2", "loss.kind=reverse_kl"], check=False)
    assert res.returncode == 2
    assert "optim.lr: 0.001 -> 0.05" in res.stderr and "loss.kind" in res.stderr, res.stderr
    again = minitron(args + ["optim.lr=5e-2", "loss.kind=reverse_kl", "overwrite=true"])
    assert "removed" in again.stdout
    saved = read_json(run / "final" / "student" / "manifest.json")["extra"]["settings"]
    assert saved["optim.lr"] == 5e-2 and saved["loss.kind"] == "reverse_kl"


def test_an_edited_input_is_tokenized_again_and_datasets_accumulate(tiny_tokenizer, tmp_path):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "data"
    a.write_text("\n".join(json.dumps({"text": f"one two three {i}"}) for i in range(20)))
    b.write_text("\n".join(json.dumps({"text": f"four five {i}"}) for i in range(10)))
    prep = ["data", "prepare", "--tokenizer", str(tiny_tokenizer), "--out", str(out)]
    first = minitron(prep + ["--input", str(a)])
    assert "already prepared" not in first.stdout
    assert "already prepared" in minitron(prep + ["--input", str(a)]).stdout
    tokens = read_json(out / "datasets.json")["datasets"][0]["tokens"]
    a.write_text(
        "\n".join(json.dumps({"text": f"a longer edited line, number {i}"}) for i in range(20))
    )
    edited = minitron(prep + ["--input", str(a)])
    assert "already prepared" not in edited.stdout
    assert read_json(out / "datasets.json")["datasets"][0]["tokens"] != tokens
    minitron(prep + ["--input", str(b)])  # another input into the same directory
    names = sorted(d["name"] for d in read_json(out / "datasets.json")["datasets"])
    assert names == ["a", "b"]


def test_a_second_writer_is_refused_and_the_first_matches_a_solo_run(imported, calib, tmp_path):
    from safetensors.torch import load_file

    solo, run = tmp_path / "solo", tmp_path / "run"
    minitron(_distill_args(imported, imported, solo, calib, 6))
    first = subprocess.Popen(
        [sys.executable, "-m", "minitron", *_distill_args(imported, imported, run, calib, 6)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / ".run.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.05)
    t0 = time.time()
    second = minitron(_distill_args(imported, imported, run, calib, 6), check=False)
    assert second.returncode == 2 and time.time() - t0 < 60
    assert f"pid {first.pid}" in second.stderr and "distill" in second.stderr, second.stderr
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    for r in (solo, run):
        minitron(["export", "--ckpt", str(r / "final" / "student"), "--out", str(r / "hf")])
    wa, wb = (load_file(str(r / "hf" / "model.safetensors")) for r in (solo, run))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [ln.split(",")[:3] for ln in (solo / "metrics.csv").read_text().splitlines()] == [
        ln.split(",")[:3] for ln in (run / "metrics.csv").read_text().splitlines()
    ]


def test_a_damaged_newest_checkpoint_is_reported_with_the_one_before(imported, calib, tmp_path):
    run = tmp_path / "run"
    args = _distill_args(imported, imported, run, calib, 6)
    minitron(args)
    shutil.rmtree(run / "final")
    newest = run / "checkpoints" / "step_000006"
    state = next((newest / "optim" / "student").glob("*.distcp"))
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01
    state.write_bytes(bytes(data))
    res = minitron(args, check=False)
    assert res.returncode == 2 and "step_000006 is damaged" in res.stderr, res.stderr[-2000:]
    assert "sha256" in res.stderr and "step_000004" in res.stderr
    (newest / "trainer.json").write_text('{"step": 6, "samp')  # truncated
    res = minitron(args, check=False)
    assert res.returncode == 2 and "trainer.json cannot be read" in res.stderr, res.stderr[-2000:]
    shutil.rmtree(newest)  # as the error says: resume from the one before
    res = minitron(args)
    assert "resumed from" in res.stdout + res.stderr and "step_000004" in res.stdout + res.stderr


def test_relative_absolute_and_moved_run_directories_resume(imported, calib, tmp_path):
    def distill(out, cwd):
        cmd = [sys.executable, "-m", "minitron", *_distill_args(imported, imported, out, calib, 4)]
        return subprocess.run(
            cmd, env=clean_env(), cwd=cwd, capture_output=True, text=True, timeout=600
        )

    def rewind(run):  # forget the last two steps, so the next call resumes from step 2
        shutil.rmtree(run / "final")
        shutil.rmtree(run / "checkpoints" / "step_000004")

    res = distill("d", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for out, cwd, path in (
        ("./d", tmp_path, tmp_path / "d"),
        (str(tmp_path / "d"), "/", None),
        ("moved", tmp_path, tmp_path / "moved"),
    ):
        if out == "moved":
            (tmp_path / "d").rename(tmp_path / "moved")
        rewind(path or tmp_path / "d")
        res = distill(out, cwd)
        assert res.returncode == 0 and "resumed from" in res.stdout + res.stderr, (
            out,
            res.stderr[-2000:],
        )


def test_overwrite_replaces_only_an_output_of_the_same_kind(imported, tmp_path):
    export = ["export", "--ckpt", str(imported), "--overwrite"]
    other = tmp_path / "mine"
    (other / "keep").mkdir(parents=True)
    (other / "keep" / "notes.txt").write_text("precious")
    res = minitron(export + ["--out", str(other)], check=False)
    assert res.returncode == 2 and "not a minitron output" in res.stderr, res.stderr
    assert (other / "keep" / "notes.txt").read_text() == "precious"
    res = subprocess.run(
        [sys.executable, "-m", "minitron", *export, "--out", "."],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "working directory" in res.stderr, res.stderr
    assert not list(tmp_path.glob(".*.tmp*"))
    res = minitron(export + ["--out", str(imported)], check=False)  # a checkpoint, not an export
    assert res.returncode == 2 and "minitron checkpoint output" in res.stderr
    minitron(export + ["--out", str(tmp_path / "hf")])
    minitron(export + ["--out", str(tmp_path / "hf")])  # an earlier export is replaced


def test_settings_name_paths_by_what_they_are(imported, calib, tmp_path, monkeypatch):
    """How a path is written does not change a run's settings; what it names does."""
    from minitron.config import loader
    from minitron.config.train import DistillConfig
    from minitron.train import settings

    monkeypatch.chdir(tmp_path)
    shutil.copytree(imported, tmp_path / "s")
    (tmp_path / "p").mkdir()
    for ext in ("bin", "idx"):
        shutil.copy(next(calib.glob(f"*.{ext}")), tmp_path / "p" / f"c.{ext}")

    def of(student, prefix, out="run", **extra):
        return settings.of(
            loader.load(
                DistillConfig,
                values={
                    "student": student,
                    "teacher": str(imported),
                    "out": out,
                    "data": {"paths": [prefix]},
                    **extra,
                },
            )
        )

    a = of("s", "p/c")
    assert a == of("./s", "./p/c") == of(str(tmp_path / "s"), str(tmp_path / "p" / "c"))
    assert a == of("s", "p/c", out="elsewhere", tp=2, schedule={"save_every": 7})
    assert a["student"].startswith("checkpoint:") and a["data.paths"] == [str(tmp_path / "p/c")]
    m = read_json(tmp_path / "s" / "manifest.json")
    m["files"]["hf_config.json"]["sha256"] = "0" * 64  # another checkpoint at the same path
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    b = of("s", "p/c")
    assert settings.differences(a, b) == [f'student: "{a["student"]}" -> "{b["student"]}"']
