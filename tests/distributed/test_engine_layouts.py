"""megatron-core's engine across layouts, on the same global batches as one process:
DP=2 (with and without the distributed optimizer) for correct, distill and SFT; TP=2 with
sequence parallelism; PP=2 with 4 micro-batches per schedule call; resuming a DP=2
distributed-optimizer checkpoint at DP=1 and a DP=1 checkpoint at DP=2."""

import csv
import json
import shutil

import pytest
from safetensors.torch import load_file
from test_cli_torchrun import launch

from helpers import minitron

pytestmark = pytest.mark.distributed

COMMON = [
    "schedule.steps=4",
    "schedule.global_batch_size=8",
    "schedule.micro_batch_size=2",
    "schedule.save_every=2",
    "optim.lr=1e-3",
    "optim.warmup_steps=1",
    "progress=false",
    "tensorboard=false",
]


def data_args(calib):
    return [f"data.paths=[{calib}]", "data.seq_length=16", "data.split=90,10,0"]


def stage_args(stage, models, calib, sft, out):
    if stage == "correct":
        return [
            "correct",
            "--model",
            str(models["teacher"]),
            "--out",
            str(out),
            *data_args(calib),
            *COMMON,
        ]
    if stage == "distill":
        return [
            "distill",
            "--student",
            str(models["student"]),
            "--teacher",
            str(models["teacher"]),
            "--out",
            str(out),
            *data_args(calib),
            *COMMON,
        ]
    return [
        "align",
        "--model",
        str(models["student"]),
        "--out",
        str(out),
        "--data",
        str(sft),
        "--algorithm",
        "sft",
        "seq_length=32",
        *COMMON,
    ]


FINAL = {"correct": "teacher", "distill": "student", "sft": "policy"}


def metrics(run):
    with open(run / "metrics.csv") as f:
        return [
            (int(r["step"]), float(r["loss"]), float(r["grad_norm"])) for r in csv.DictReader(f)
        ]


def weights(ckpt, out):
    minitron(["export", "--ckpt", str(ckpt), "--out", str(out)])
    return load_file(str(out / "model.safetensors"))


def assert_same(ref_run, run, stage, tmp, w_tol, layout):
    """Same metrics every step and final weights as the reference run; ``run`` saved its final
    checkpoint at ``layout`` ({"tp", "pp", "dp"}: a dropped override would change it)."""
    saved = json.loads((run / "final" / FINAL[stage] / "manifest.json").read_text())
    assert {k: saved["saved_layout"][k] for k in layout} == layout, saved["saved_layout"]
    a, b = metrics(ref_run), metrics(run)
    assert a and [r[0] for r in a] == [r[0] for r in b]
    for (_, la, ga), (_, lb, gb) in zip(a, b):
        assert abs(la - lb) <= 1e-5 and abs(ga - gb) <= 1e-5 * max(1.0, ga), (a, b)
    wa = weights(ref_run / "final" / FINAL[stage], tmp / "wa")
    wb = weights(run / "final" / FINAL[stage], tmp / "wb")
    for k in wa:
        assert (wa[k] - wb[k]).abs().max().item() <= w_tol, k


@pytest.fixture(scope="module")
def setup(tiny_models, calib, tmp_path_factory):
    import json

    root = tmp_path_factory.mktemp("engine")
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
            "target.hidden_size=48",
        ]
    )
    sft = root / "sft.jsonl"
    sft.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Say {i}"},
                        {"role": "assistant", "content": f"{i} {i} {i}" * (1 + i % 3)},
                    ]
                }
            )
            for i in range(24)
        )
    )
    models = {"teacher": teacher, "student": student}
    refs = {}
    for stage in ("correct", "distill", "sft"):
        refs[stage] = root / f"ref_{stage}"
        minitron(stage_args(stage, models, calib, sft, refs[stage]))
    return models, sft, refs


@pytest.mark.parametrize(
    "stage,layout",
    [
        ("distill", ["use_distributed_optimizer=true"]),
        ("distill", ["use_distributed_optimizer=false"]),
        ("correct", []),
        ("sft", []),
    ],
)
def test_dp2_equals_dp1(stage, layout, setup, calib, tmp_path):
    models, sft, refs = setup
    launch(2, stage_args(stage, models, calib, sft, tmp_path / "run") + layout)
    assert_same(refs[stage], tmp_path / "run", stage, tmp_path, 1e-5, {"tp": 1, "pp": 1, "dp": 2})


@pytest.mark.parametrize("layout", [["tp=2", "sequence_parallel=true"], ["pp=2"]])
def test_tp2_sequence_parallel_and_pp2_with_4_micro_batches_equal_tp1(
    layout, setup, calib, tmp_path
):
    models, sft, refs = setup
    launch(2, stage_args("distill", models, calib, sft, tmp_path / "run") + layout)
    # Adam divides by sqrt(v): ~1e-8 differences in the summation order of near-zero
    # gradients become ~1e-5 differences of a few weights after 4 steps at lr 1e-3
    expect = {"tp": 2, "pp": 1, "dp": 1} if "tp=2" in layout else {"tp": 1, "pp": 2, "dp": 1}
    assert_same(refs["distill"], tmp_path / "run", "distill", tmp_path, 1e-4, expect)


def _truncate_to(run, step):
    """Keep the run's checkpoints up to ``step`` (as if it had stopped there)."""
    for ck in (run / "checkpoints").glob("step_*"):
        if int(ck.name.split("_")[1]) > step:
            shutil.rmtree(ck)
    shutil.rmtree(run / "final")
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(rows[: 1 + step]) + "\n")


@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_resume_at_another_data_parallel_size(first, then, setup, calib, tmp_path):
    """A distillation checkpointed at step 2 with DP=first (DP=2: the distributed optimizer)
    resumes at DP=then and ends where the uninterrupted run ends."""
    models, sft, refs = setup
    run = tmp_path / "run"
    if first == 1:
        shutil.copytree(refs["distill"], run)
    else:
        launch(2, stage_args("distill", models, calib, sft, run))
    _truncate_to(run, 2)
    args = stage_args("distill", models, calib, sft, run)
    res = launch(2, args) if then == 2 else minitron(args)
    assert "resumed from" in res.stdout + res.stderr
    assert_same(refs["distill"], run, "distill", tmp_path, 1e-5, {"tp": 1, "pp": 1, "dp": then})
