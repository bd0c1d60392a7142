"""A distillation run at TP=2 and at PP=2 equals TP=1 on a tiny model (losses and weights)."""

import csv

import pytest
from safetensors.torch import load_file
from test_cli_torchrun import launch

from helpers import minitron, read_json

pytestmark = pytest.mark.distributed


def args(student, teacher, run, calib, extra=()):
    return [
        "distill",
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(run),
        f"data.paths=[{calib}]",
        "data.seq_length=16",
        "data.split=90,10,0",
        "schedule.steps=3",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "optim.lr=1e-3",
        "optim.warmup_steps=1",
        "progress=false",
        "tensorboard=false",
        *extra,
    ]


def losses(run):
    with open(run / "metrics.csv") as f:
        return [(float(r["loss"]), float(r["grad_norm"])) for r in csv.DictReader(f)]


def weights(ckpt, out):
    minitron(["export", "--ckpt", str(ckpt), "--out", str(out)])
    return load_file(str(out / "model.safetensors"))


@pytest.fixture(scope="module")
def tp1(tiny_models, calib, tmp_path_factory):
    root = tmp_path_factory.mktemp("distill_tp1")
    teacher = tiny_models["llama-tied"]
    student = root / "student"
    minitron(
        [
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(student),
            "width_method=magnitude",
            "target.ffn_hidden_size=64",
            "target.num_layers=2",
            "depth.criterion=lm_loss",
            "depth.loss={name: v, data: {paths: [" + str(calib) + "], seq_length: 16}, "
            "num_samples: 2}",
        ]
    )
    runs = {}
    for name, extra in (("plain", ()), ("parallel", ("parallel_correction=true",))):
        minitron(args(student, teacher, root / name, calib, extra))
        runs[name] = (root / name, weights(root / name / "final" / "student", root / f"w_{name}"))
    return teacher, student, runs


@pytest.mark.parametrize("layout", ["tp=2", "pp=2"])
@pytest.mark.parametrize("mode", ["plain", "parallel"])
def test_distill_layout_equals_tp1(layout, mode, tp1, calib, tmp_path):
    teacher, student, runs = tp1
    ref_run, a = runs[mode]
    extra = ("parallel_correction=true",) if mode == "parallel" else ()
    launch(2, args(student, teacher, tmp_path / "run", calib, (*extra, layout)))
    ref, got = losses(ref_run), losses(tmp_path / "run")
    assert len(ref) == len(got) > 0
    saved = read_json(tmp_path / "run" / "final" / "student" / "manifest.json")["saved_layout"]
    assert (saved["tp"], saved["pp"], saved["dp"]) == ((2, 1, 1) if layout == "tp=2" else (1, 2, 1))
    for (la, ga), (lb, gb) in zip(ref, got):
        assert abs(la - lb) <= 1e-5 and abs(ga - gb) <= 1e-4 * max(1.0, ga)
    # after 3 AdamW steps at lr 1e-3: Adam divides by sqrt(v), which turns ~1e-8 differences in
    # the summation order of near-zero gradients into ~1e-5 differences of a few weights
    b = weights(tmp_path / "run" / "final" / "student", tmp_path / "w")
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-4, k
