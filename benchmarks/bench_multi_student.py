"""Two students distilled together (one teacher forward per micro-batch) vs one after the
other: step time per student, total wall time, and the teacher forward's share of a step.

    python benchmarks/bench_multi_student.py [--teacher runs/bench/teacher] \
        [--data runs/bench/data] [--steps 6] [--repeats 2] \
        [--out benchmarks/results/multi_student.json]

Students: SmolLM2-135M's embedded-default width student (hidden 384, MLP 1024, 6 heads;
magnitude-pruned) and depth student (15 layers; the block chosen by LM loss), made on first
use next to the teacher. Each repeat runs, in alternating order, the two single-student
distillations and the joint one (real ``minitron distill`` processes, the same batches:
4 x 256 tokens per step). Step times come from each run's ``metrics.csv`` (tokens/s per
step, the first step left out as warm-up); wall times include start-up and the final save.
The teacher forward alone is timed on the same micro-batch in a separate process. This
process imports no torch.

The last part is the paper's width + depth pair from Llama 3.1 8B, on paper: FLOPs per
training token with and without the shared teacher forward (2N for a forward, 6N for a
training step).
"""

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEACHER_FORWARD = """
import sys, time, statistics, torch
from minitron.cli import quiet_megatron
quiet_megatron()
from minitron.checkpoint.load import load_model
from minitron.parallel import runtime
runtime.init(1, 1)
torch.manual_seed(0)
model, arch, _ = load_model(sys.argv[1], verify="size")
model.eval()
x = torch.randint(0, arch.vocab_size, (int(sys.argv[2]), int(sys.argv[3])))
times = []
with torch.no_grad():
    for _ in range(4):
        t = time.perf_counter()
        model(x, None, None)
        times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""


def minitron(args: list, check=True) -> float:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "minitron", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        sys.exit(f"minitron {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t


def students(teacher: Path, data: Path) -> tuple[Path, Path]:
    width, depth = teacher.with_name("ms_width"), teacher.with_name("ms_depth")
    if not (width / "manifest.json").is_file():
        minitron(
            [
                "prune",
                "--model",
                str(teacher),
                "--out",
                str(width),
                "width_method=magnitude",
                "target.hidden_size=384",
                "target.ffn_hidden_size=1024",
                "target.num_attention_heads=6",
                "overwrite=true",
            ]
        )
    if not (depth / "manifest.json").is_file():
        minitron(
            [
                "prune",
                "--model",
                str(teacher),
                "--out",
                str(depth),
                "target.num_layers=15",
                "depth.criterion=lm_loss",
                "depth.loss={name: v, data: {paths: ["
                + str(data)
                + "], seq_length: 256}, num_samples: 8}",
                "overwrite=true",
            ]
        )
    return width, depth


def step_seconds(run: Path, tokens_per_step: int) -> float:
    rows = list(csv.DictReader((run / "metrics.csv").open()))[1:]  # first step: warm-up
    return statistics.median(tokens_per_step / float(r["tokens_per_s"]) for r in rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", default="runs/bench/teacher")
    p.add_argument("--data", default="runs/bench/data")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()
    teacher, data = Path(args.teacher), Path(args.data)
    width, depth = students(teacher, data)
    gbs, seq = 4, 256
    common = [
        f"data.paths=[{data}]",
        f"data.seq_length={seq}",
        "data.split=98,2,0",
        f"schedule.steps={args.steps}",
        f"schedule.global_batch_size={gbs}",
        f"schedule.micro_batch_size={gbs}",
        f"schedule.save_every={args.steps}",
        "schedule.eval_every=0",
        "validation.loss={name: v, data: {paths: ["
        + str(data)
        + f"], seq_length: {seq}, split: '98,2,0'}}, num_samples: 4}}",
        "progress=false",
        "tensorboard=false",
        "optim.lr=3e-4",
        "optim.warmup_steps=2",
    ]
    runs = {"width": [], "depth": [], "together": []}
    for r in range(args.repeats):
        order = ["separate", "together"] if r % 2 == 0 else ["together", "separate"]
        for kind in order:
            work = Path(tempfile.mkdtemp())
            if kind == "separate":
                for name, s in (("width", width), ("depth", depth)):
                    wall = minitron(
                        [
                            "distill",
                            "--student",
                            str(s),
                            "--teacher",
                            str(teacher),
                            "--out",
                            str(work / name),
                            *common,
                        ]
                    )
                    runs[name].append(
                        {
                            "wall_s": round(wall, 2),
                            "step_s": round(step_seconds(work / name, gbs * seq), 3),
                        }
                    )
            else:
                wall = minitron(
                    [
                        "distill",
                        "--student",
                        str(width),
                        "--student",
                        str(depth),
                        "--teacher",
                        str(teacher),
                        "--out",
                        str(work / "j"),
                        *common,
                    ]
                )
                runs["together"].append(
                    {
                        "wall_s": round(wall, 2),
                        "step_s": round(step_seconds(work / "j", gbs * seq), 3),
                    }
                )
            shutil.rmtree(work)
    fwd = float(
        subprocess.run(
            [sys.executable, "-c", TEACHER_FORWARD, str(teacher), str(gbs), str(seq)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("wall_s", "step_s")}
        for k, v in runs.items()
    }
    sep_step = med["width"]["step_s"] + med["depth"]["step_s"]
    sep_wall = med["width"]["wall_s"] + med["depth"]["wall_s"]
    predicted = sep_step - fwd
    result = {
        "steps": args.steps,
        "tokens_per_step": gbs * seq,
        "runs": runs,
        "median": med,
        "teacher_forward_s": round(fwd, 3),
        "teacher_forward_share_of_width_step": round(fwd / med["width"]["step_s"], 3),
        "teacher_forward_share_of_depth_step": round(fwd / med["depth"]["step_s"], 3),
        "separate_step_s": round(sep_step, 3),
        "together_step_s": med["together"]["step_s"],
        "predicted_together_step_s": round(predicted, 3),
        "step_saving": round(1 - med["together"]["step_s"] / sep_step, 3),
        "predicted_step_saving": round(fwd / sep_step, 3),
        "separate_wall_s": round(sep_wall, 1),
        "together_wall_s": med["together"]["wall_s"],
        "wall_saving": round(1 - med["together"]["wall_s"] / sep_wall, 3),
        "tokens_per_s_per_student": {
            "separate": round(2 * gbs * seq / sep_step, 1),
            "together": round(2 * gbs * seq / med["together"]["step_s"], 1),
        },
        "paper_pair_flops": paper_flops(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


def paper_flops() -> dict:
    """Llama 3.1 8B teacher, its 4B width and depth students (Table 3): FLOPs per token of
    distilling both, with the teacher forward paid twice or once."""
    import json as j

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minitron.models.arch import arch_from_hf_config
    from minitron.models.params import count_params

    root = Path(__file__).resolve().parents[1]
    t = arch_from_hf_config(j.loads((root / "examples/llama-3.1-8b/config.json").read_text()))
    n = {
        "teacher": count_params(t)["total"],
        "width": count_params(t.replace(hidden_size=3072, ffn_hidden_size=9216))["total"],
        "depth": count_params(t.replace(num_layers=16))["total"],
    }
    separate = 2 * 2 * n["teacher"] + 6 * (n["width"] + n["depth"])
    together = 2 * n["teacher"] + 6 * (n["width"] + n["depth"])
    return {
        "params": n,
        "separate_flops_per_token": separate,
        "together_flops_per_token": together,
        "saving": round(1 - together / separate, 3),
    }


if __name__ == "__main__":
    main()
