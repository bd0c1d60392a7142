"""The paper's Figure 6 and Figure 4 at small scale, on SmolLM2-135M width-pruned to ~46%.

    python benchmarks/ablations.py [--work runs/bench] [--steps 40] [--eval-every 10]

Equal budgets (steps x 8 x 256 tokens of the built-in corpora), the same held-out
text (16 windows of the valid split, seed 1234) every --eval-every steps:

  (a) pruned (activation) + KD from the original teacher
  (b) pruned (activation) + LM loss only (no teacher)
  (c) random-pruned + KD
  (d) random init (pruned architecture) + KD
  (e) pruned (activation) + KD from the corrected teacher (teacher correction first:
      `minitron correct`, full mode, a fifth of the peak LR, same data)

Every run is the real CLI and resumes; results go to --out (JSON) and the loss
curves to docs/figures/ablations.png. Needs runs/bench from prune_compare.py.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def cli(*args):
    print("$ minitron", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True)


def curve(run: Path) -> list[tuple[int, float]]:
    with open(run / "metrics.csv") as f:
        return [
            (int(r["step"]), float(r["val_loss"])) for r in csv.DictReader(f) if r.get("val_loss")
        ]


def plot(curves: dict, out: Path, baseline: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=name)
    ax.axhline(baseline, color="grey", ls="--", lw=1, label="teacher (uncorrected)")
    ax.set_xlabel("optimizer step (8 x 256 tokens each)")
    ax.set_ylabel("held-out LM loss")
    ax.set_yscale("log")
    ax.set_title("SmolLM2-135M -> 46% non-embedding params: recovery at equal budgets")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps of each student run")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--correct-steps", type=int, default=120, help="teacher-correction steps")
    p.add_argument("--out", default="benchmarks/results/ablations.json")
    p.add_argument("--plot", default="docs/figures/ablations.png")
    args = p.parse_args()
    w = Path(args.work)
    data = w / "data"
    teacher = w / "teacher"
    width = [
        "target.hidden_size=384",
        "target.ffn_hidden_size=1024",
        "target.num_attention_heads=6",
    ]
    if not (w / "width_reinit" / "manifest.json").exists():
        cli(
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(w / "width_reinit"),
            "--overwrite",
            "width_method=random",
            "reinit=true",
            *width,
        )
    val = (
        "validation.loss={name: valid, data: {paths: [" + str(data) + "], seq_length: 256, "
        "seed: 1234}, num_samples: 16}"
    )
    shared = [
        f"data.paths=[{data}]",
        "data.seq_length=256",
        "schedule.global_batch_size=8",
        "schedule.micro_batch_size=4",
        f"schedule.eval_every={args.eval_every}",
        "schedule.save_every=20",
        "progress=false",
        val,
    ]
    common = [f"schedule.steps={args.steps}", *shared]
    student_optim = ["optim.lr=3e-4", "optim.min_lr=3e-5", "optim.warmup_steps=10"]
    corrected = w / "ablation_correct" / "final" / "teacher"
    cli(
        "correct",
        "--model",
        str(teacher),
        "--out",
        str(w / "ablation_correct"),
        "optim.lr=6e-5",
        "optim.min_lr=6e-6",
        "optim.warmup_steps=10",
        f"schedule.steps={args.correct_steps}",
        *shared,
    )
    runs = {
        "(a) pruned + KD": ("distill", w / "width_activation", teacher),
        "(b) pruned + LM loss": ("correct", w / "width_activation", None),
        "(c) random-pruned + KD": ("distill", w / "width_random", teacher),
        "(d) random init + KD": ("distill", w / "width_reinit", teacher),
        "(e) pruned + KD, corrected teacher": ("distill", w / "width_activation", corrected),
    }
    results, curves = {}, {}
    for i, (name, (cmd, student, t)) in enumerate(runs.items()):
        run = w / f"ablation_{'abcde'[i]}"
        if cmd == "distill":
            cli(
                "distill",
                "--student",
                str(student),
                "--teacher",
                str(t),
                "--out",
                str(run),
                *student_optim,
                *common,
            )
        else:
            cli("correct", "--model", str(student), "--out", str(run), *student_optim, *common)
        curves[name] = curve(run)
        results[name] = {"final_val_loss": curves[name][-1][1], "curve": curves[name]}
        print(name, results[name]["final_val_loss"], flush=True)
    results["teacher_correction"] = {"curve": curve(w / "ablation_correct")}
    base = w / "ablation_teacher_val.json"
    if not base.exists():  # the uncorrected teacher on the same held-out windows
        cli(
            "eval",
            "--model",
            str(teacher),
            "--out",
            str(base),
            "progress=false",
            "loss=[{name: valid, data: {paths: [" + str(data) + "], seq_length: 256, "
            "seed: 1234}, num_samples: 16}]",
        )
    baseline = next(r["value"] for r in json.loads(base.read_text()) if r["metric"] == "loss")
    results["teacher_val_loss"] = baseline
    Path(args.out).write_text(json.dumps(results, indent=2))
    plot(curves, Path(args.plot), baseline)
    for name, r in results.items():
        if isinstance(r, dict) and "final_val_loss" in r:
            print(f"| {name} | {r['final_val_loss']:.3f} |")


if __name__ == "__main__":
    main()
