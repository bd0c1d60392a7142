"""Distillation tokens/s at TP=1 and TP=2 on this machine (2 gloo ranks on 2 cores).

    python benchmarks/bench_distill_tp.py [--steps 6]

Runs the real `minitron distill` (SmolLM2 teacher, width-pruned student from
prune_compare.py) for a few steps at each layout and reports the median
tokens/s of the steps after the first.
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path


def run(args, nproc, out):
    shutil.rmtree(out, ignore_errors=True)
    common = ["distill", "--student", args.student, "--teacher", args.teacher, "--out", str(out),
              f"data.paths=[{args.data}]", "data.seq_length=256", f"schedule.steps={args.steps}",
              "schedule.global_batch_size=8", "schedule.micro_batch_size=4",
              "schedule.save_every=1000", "progress=false", "tensorboard=false",
              "validation.loss={name: v, data: {paths: [" + args.data + "], seq_length: 256}, "
              "num_samples: 4}"]
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    if nproc == 1:
        cmd = [sys.executable, "-m", "minitron", *common]
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(nproc), "-m", "minitron", *common, f"tp={nproc}"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(out / "metrics.csv") as f:
        rates = [float(r["tokens_per_s"]) for r in csv.DictReader(f) if r.get("tokens_per_s")]
    return statistics.median(rates[1:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--student", default="runs/bench/width_activation")
    p.add_argument("--teacher", default="runs/bench/teacher")
    p.add_argument("--data", default="runs/bench/data")
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args()
    tmp = Path("runs/bench/tp_speed")
    one = run(args, 1, tmp / "tp1")
    two = run(args, 2, tmp / "tp2")
    print(f"| distill tokens/s, 8 x 256 per step | TP=1 (2 threads): {one:.0f} | TP=2 (2 ranks x 1 "
          f"thread): {two:.0f} | ratio {two / one:.2f} |")


if __name__ == "__main__":
    main()
