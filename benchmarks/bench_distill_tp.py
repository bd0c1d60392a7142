"""Distillation tokens/s at TP=1 and TP=2 on this machine (2 gloo ranks on 2 cores).

    python benchmarks/bench_distill_tp.py [--steps 6]

SmolLM2-135M has 3 KV groups, which TP=2 cannot split (`minitron distill tp=2` refuses
it by name), so the pair measured here is made TP-2-able with the real CLI: the teacher
pruned to 2 KV groups x 3 heads (weight-magnitude ranking), and its student to hidden
384, MLP 1024, 2 x 2 heads (the shapes of the width-pruned student, 2 groups). Speed
does not depend on the ranking. Runs the real `minitron distill` for a few steps at each
layout and reports the median tokens/s of the steps after the first.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path


def cli(*args):
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True, stdout=subprocess.DEVNULL)


def pair(teacher: str, work: Path) -> tuple[str, str]:
    """A teacher and student with 2 KV groups (cached in ``work``)."""
    t, s = work / "teacher_g2", work / "student_g2"
    if not (t / "manifest.json").exists():
        cli(
            "prune",
            "--model",
            teacher,
            "--out",
            str(t),
            "--overwrite",
            "width_method=magnitude",
            "target.num_attention_heads=6",
            "target.num_query_groups=2",
        )
    if not (s / "manifest.json").exists():
        cli(
            "prune",
            "--model",
            str(t),
            "--out",
            str(s),
            "--overwrite",
            "width_method=magnitude",
            "target.hidden_size=384",
            "target.ffn_hidden_size=1024",
            "target.num_attention_heads=4",
        )
    return str(t), str(s)


def run(teacher, student, data, steps, nproc, out):
    shutil.rmtree(out, ignore_errors=True)
    common = [
        "distill",
        "--student",
        student,
        "--teacher",
        teacher,
        "--out",
        str(out),
        f"data.paths=[{data}]",
        "data.seq_length=256",
        f"schedule.steps={steps}",
        "schedule.global_batch_size=8",
        "schedule.micro_batch_size=4",
        "schedule.save_every=1000",
        "progress=false",
        "tensorboard=false",
        "validation.loss={name: v, data: {paths: [" + data + "], seq_length: 256}, num_samples: 4}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    if nproc == 1:
        cmd = [sys.executable, "-m", "minitron", *common]
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            "-m",
            "minitron",
            *common,
            f"tp={nproc}",
        ]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(out / "metrics.csv") as f:
        rates = [float(r["tokens_per_s"]) for r in csv.DictReader(f) if r.get("tokens_per_s")]
    return statistics.median(rates[1:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", default="runs/bench/teacher")
    p.add_argument("--data", default="runs/bench/data")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", default="benchmarks/results/distill_tp.json")
    args = p.parse_args()
    work = Path("runs/bench/tp_speed")
    teacher, student = pair(args.teacher, work)
    one = run(teacher, student, args.data, args.steps, 1, work / "tp1")
    two = run(teacher, student, args.data, args.steps, 2, work / "tp2")
    Path(args.out).write_text(
        json.dumps(
            {
                "tp1_tokens_per_s": round(one, 1),
                "tp2_tokens_per_s": round(two, 1),
                "ratio": round(two / one, 3),
            },
            indent=2,
        )
    )
    print(
        f"| distill tokens/s, 8 x 256 per step | TP=1 (2 threads): {one:.0f} | TP=2 (2 ranks x 1 "
        f"thread): {two:.0f} | ratio {two / one:.2f} |"
    )


if __name__ == "__main__":
    main()
