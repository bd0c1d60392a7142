"""Speed of a distillation step against its parts, measured side by side.

    python benchmarks/bench_kd_speed.py [--batch 4 --seq 256 --repeats 3]

On SmolLM2 (teacher) and its width-pruned student (runs/bench/width_activation,
from prune_compare.py), the same micro-batch:
  A  a KD step: the teacher's forward, then the student's forward/backward of the
     forward KL from the teacher's logits;
  B  the student's forward/backward with the plain LM loss;
  C  the teacher's forward alone.
KD machinery overhead = A / (B + C) - 1 (target <= 10%). Runs alternate; medians.
"""

import argparse
import json
import statistics
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--student", default="runs/bench/width_activation")
    p.add_argument("--teacher", default="runs/bench/teacher")
    p.add_argument("--data", default="runs/bench/data")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/kd_speed.json")
    args = p.parse_args()

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config.schema import DataConfig
    from minitron.config.train import DistillLossConfig
    from minitron.data.datasets import samples
    from minitron.parallel import runtime
    from minitron.parallel.schedule import pipeline_forward
    from minitron.train import trainable
    from minitron.train.steps import Distiller, lm_step

    quiet_megatron()
    runtime.init(1, 1)
    student, arch, _ = load_model(args.student)
    teacher, _, _ = load_model(args.teacher)
    trainable.freeze(teacher)
    teacher.eval()
    student.train()
    mb = samples(
        DataConfig(paths=[args.data], seq_length=args.seq), "train", args.batch, arch.vocab_size
    )
    distiller = Distiller(student, teacher, DistillLossConfig(), arch.vocab_size)

    def timed(fn):
        student.zero_grad(set_to_none=True)
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    steps = {
        "kd": lambda: distiller.step([mb]),
        "student_lm": lambda: lm_step(student, [mb]),
        "teacher_fwd": lambda: pipeline_forward(teacher, [mb], lambda o, b: None),
    }
    for fn in steps.values():
        timed(fn)  # warm-up
    times = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, fn in steps.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["kd"] / (med["student_lm"] + med["teacher_fwd"]) - 1
    res = {
        **{f"{k}_s": round(v, 3) for k, v in med.items()},
        "overhead_pct": round(100 * overhead, 1),
        "tokens": args.batch * args.seq,
        "kd_tokens_per_s": round(args.batch * args.seq / med["kd"], 1),
    }
    print(json.dumps(res, indent=2))
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(
        f"| KD step {med['kd']:.2f} s | student LM step {med['student_lm']:.2f} s + teacher "
        f"forward {med['teacher_fwd']:.2f} s | overhead {100 * overhead:+.1f}% |"
    )


if __name__ == "__main__":
    main()
