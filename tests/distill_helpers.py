"""Shared by the multi-student distillation tests (in-process world and torchrun)."""

import csv
import json

from safetensors.torch import load_file

from helpers import minitron


def common(calib, steps=4):
    return [
        f"data.paths=[{calib}]",
        "data.seq_length=16",
        "data.split=90,10,0",
        f"schedule.steps={steps}",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "schedule.save_every=2",
        "optim.warmup_steps=2",
        "optim.lr=1e-3",
        "progress=false",
        "tensorboard=false",
        "validation.loss={name: v, data: {paths: [" + str(calib) + "], seq_length: 16, "
        "split: '90,10,0'}, num_samples: 4}",
    ]


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def weights(ckpt, out):
    minitron(["export", "--ckpt", str(ckpt), "--out", str(out)])
    return load_file(str(out / "model.safetensors"))


def together_args(pair, run, calib, steps=4, extra=()):
    teacher, width, depth, _ = pair
    return [
        "distill",
        "--student",
        str(width),
        "--student",
        str(depth),
        "--teacher",
        str(teacher),
        "--out",
        str(run),
        *common(calib, steps),
        *extra,
    ]


def assert_equal_to_alone(pair, run, tmp_path, tol=1e-6, layout=None):
    """Each student's metrics every step and its final weights equal its solo run's; with
    ``layout`` ({"tp", "pp", "dp"}), every final checkpoint was saved at that layout."""
    _, _, _, alone = pair
    joint = rows(run)
    for name, single in alone.items():
        ref = rows(single)
        assert ref and [r["step"] for r in ref] == [r["step"] for r in joint]
        if layout is not None:
            for ck in (single / "final" / "student", run / "final" / name):
                saved = json.loads((ck / "manifest.json").read_text())["saved_layout"]
                assert {k: saved[k] for k in layout} == layout, (ck, saved)
        for a, b in zip(ref, joint):
            for key in ("kd", "loss", "grad_norm", "lr"):
                x, y = float(a[key]), float(b[f"{key}_{name}"])
                assert abs(x - y) <= tol * max(1.0, abs(x)), (name, key, a["step"], x, y)
            if a.get("val_loss"):
                assert abs(float(a["val_loss"]) - float(b[f"val_loss_{name}"])) <= tol
        wa = weights(single / "final" / "student", tmp_path / f"a-{name}")
        wb = weights(run / "final" / name, tmp_path / f"b-{name}")
        assert sorted(wa) == sorted(wb)
        for k in wa:
            assert (wa[k] - wb[k]).abs().max().item() <= tol, (name, k)


def make_students(teacher, calib, root):
    """A width student and a depth student of ``teacher``."""
    width, depth = root / "width", root / "depth"
    minitron(
        [
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(width),
            "width_method=magnitude",
            "target.ffn_hidden_size=64",
            "target.hidden_size=48",
        ]
    )
    minitron(
        [
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(depth),
            "target.num_layers=2",
            "depth.criterion=lm_loss",
            "depth.loss={name: v, data: {paths: ["
            + str(calib)
            + "], seq_length: 16}, num_samples: 2}",
        ]
    )
    return width, depth
