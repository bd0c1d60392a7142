"""Training machinery: LR schedule, teacher-correction modes, resume, non-finite loss."""

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from minitron.train.schedule import lr_at

from helpers import clean_env, minitron


def test_cosine_schedule_with_warmup():
    assert lr_at(0, 1.0, 0.1, 4, 20) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 0.1, 4, 20) == pytest.approx(1.0)
    assert lr_at(4, 1.0, 0.1, 4, 20) == pytest.approx(1.0)
    assert lr_at(12, 1.0, 0.1, 4, 20) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert lr_at(20, 1.0, 0.1, 4, 20) == pytest.approx(0.1)
    assert lr_at(99, 1.0, 0.1, 4, 20) == pytest.approx(0.1)


def common(calib, steps=4):
    return [
        f"data.paths=[{calib}]",
        "data.seq_length=16",
        "data.split=90,10,0",
        f"schedule.steps={steps}",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "optim.warmup_steps=2",
        "progress=false",
        "validation.loss={name: v, data: {paths: [" + str(calib) + "], seq_length: 16, "
        "split: '90,10,0'}, num_samples: 4}",
    ]


def read_metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("mode", ["norm", "lora"])
def test_light_correction_leaves_other_weights_bit_identical(mode, tiny_models, calib, tmp_path):
    src = tiny_models["llama-untied"]
    minitron(
        [
            "correct",
            "--model",
            str(src),
            "--out",
            str(tmp_path / "run"),
            f"mode={mode}",
            "lora_rank=2",
            "optim.lr=1e-2",
            *common(calib),
        ]
    )
    minitron(
        [
            "export",
            "--ckpt",
            str(tmp_path / "run" / "final" / "teacher"),
            "--out",
            str(tmp_path / "hf"),
        ]
    )
    before = load_file(str(src / "model.safetensors"))
    after = load_file(str(tmp_path / "hf" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if mode == "norm":
        assert changed and all("norm" in k for k in changed)
    else:  # LoRA merged into the four projections of every layer, nothing else
        proj = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        assert changed and all(any(p in k for p in proj) for k in changed)
        for k in changed:  # the update is low rank
            assert torch.linalg.matrix_rank((after[k] - before[k]).double(), atol=1e-6) <= 2


def test_full_correction_lowers_training_loss(tiny_models, calib, tmp_path):
    minitron(
        [
            "correct",
            "--model",
            str(tiny_models["llama-untied"]),
            "--out",
            str(tmp_path / "r"),
            "optim.lr=3e-3",
            *common(calib, steps=8),
        ]
    )
    rows = read_metrics(tmp_path / "r")
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    again = minitron(
        [
            "correct",
            "--model",
            str(tiny_models["llama-untied"]),
            "--out",
            str(tmp_path / "r"),
            "optim.lr=3e-3",
            *common(calib, steps=8),
        ]
    )
    assert "nothing to do" in again.stdout


def _distill_args(student, teacher, run, calib, steps):
    return [
        "distill",
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(run),
        "schedule.save_every=2",
        "optim.lr=1e-3",
        *common(calib, steps),
    ]


def test_kill_9_and_resume_reproduces_the_uninterrupted_run(tiny_models, calib, tmp_path):
    teacher = tiny_models["llama-untied"]
    student = tmp_path / "student"
    minitron(
        [
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(student),
            "width_method=magnitude",
            "target.ffn_hidden_size=64",
            "target.hidden_size=48",
        ]
    )
    minitron(_distill_args(student, teacher, tmp_path / "full", calib, 10))
    # the same run, killed with SIGKILL once step 5 is logged, then rerun to the end
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minitron", *_distill_args(student, teacher, run, calib, 10)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if (run / "metrics.csv").is_file() and len(read_metrics(run)) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = read_metrics(run)
    assert 5 <= len(rows) < 10, "the kill came too late to test resumption"
    res = minitron(_distill_args(student, teacher, run, calib, 10))
    assert "resumed from" in res.stdout + res.stderr
    a, b = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["loss"] == rb["loss"] and ra["grad_norm"] == rb["grad_norm"], (ra, rb)
    wa = load_file_from_ckpt(tmp_path / "full" / "final" / "student", tmp_path / "ea")
    wb = load_file_from_ckpt(run / "final" / "student", tmp_path / "eb")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def load_file_from_ckpt(ckpt, out):
    minitron(["export", "--ckpt", str(ckpt), "--out", str(out)])
    return load_file(str(out / "model.safetensors"))


def test_non_finite_gradient_skips_the_step_then_stops_after_max_skipped(
    tiny_models, calib, tmp_path, world
):
    """An inf injected into the gradient buffer: that step leaves weights and Adam state as
    they were and is counted; max_skipped_steps skips in a row stop the run, naming the last
    good checkpoint."""
    from minitron.checkpoint.load import describe_source, load_model
    from minitron.config.schema import DataConfig
    from minitron.config.train import CorrectConfig, OptimConfig, ScheduleConfig
    from minitron.train.loop import NonFiniteLoss, Trained, gpt_batches, run
    from minitron.train.steps import lm_step

    src = str(tiny_models["llama-untied"])
    arch, hf, tok = describe_source(src)
    model, _, _ = load_model(src)
    t = Trained("student", model, OptimConfig(lr=1e-3, warmup_steps=0), (arch, hf, tok, "float32"))
    sched = ScheduleConfig(steps=8, global_batch_size=2, micro_batch_size=2, save_every=2)
    opts = CorrectConfig(
        model=src, out=str(tmp_path), max_skipped_steps=2, tensorboard=False, progress=False
    )
    seen = {"n": 0}

    def snapshot():
        opt = t.engine.optimizer.chained_optimizers[0].optimizer
        return (
            [p.detach().clone() for p in model.parameters()],
            [s["exp_avg"].clone() for s in opt.state.values()],
        )

    def make_step():
        def step(batches):
            seen["n"] += 1
            if seen["n"] == 4:  # step 3 was the first injected one: nothing moved
                w, m = snapshot()
                assert all(torch.equal(a, b) for a, b in zip(w, seen["before"][0]))
                assert all(torch.equal(a, b) for a, b in zip(m, seen["before"][1]))
            out = lm_step(t.ddp, batches)
            if seen["n"] >= 3:
                if seen["n"] == 3:
                    seen["before"] = snapshot()
                t.ddp.buffers[0].grad_data[0] = float("inf")
            return out

        return step

    data = DataConfig(paths=[str(calib)], seq_length=16)
    with pytest.raises(NonFiniteLoss) as e:
        run(
            tmp_path / "run",
            [t],
            gpt_batches(data, sched, 300),
            sched,
            make_step,
            lambda: {},
            {},
            opts,
            log=lambda s: None,
        )
    assert seen["n"] == 4 and "step 4" in str(e.value) and "step_000002" in str(e.value)
    rows = read_metrics(tmp_path / "run")
    assert [int(float(r["skipped_steps"])) for r in rows] == [0, 0, 1, 2]
    assert math.isfinite(float(rows[1]["grad_norm"])) and not math.isfinite(
        float(rows[2]["grad_norm"])
    )
