"""The built-in instruction-following set (ifeval_mini, lm-eval's IFEval checkers) on the
teacher, a distilled student, that student after SFT and after RPO, with standard errors.

    python benchmarks/bench_ifeval.py --run runs/default_v3 --student depth

The student is aligned exactly as ``minitron run`` does with ``align.enabled=true`` (SFT on
builtin:sft, then two rounds of RPO on builtin:preferences, the run's default steps), into
``<run>/bench_ifeval/``; every model then generates for the 135 prompts in its chat
template (greedy, at most 256 new tokens) through ``minitron lm-eval``. Each step is skipped
when its output exists, so a killed benchmark resumes.

Standard errors are over prompts: the prompt-level accuracies are means of one 0/1 per
prompt (sample standard deviation / sqrt(n)); the instruction-level ones are ratios (followed
instructions / instructions) whose prompts are the sampling unit, so their error is the
ratio estimator's, sqrt(sum_i (x_i - p m_i)^2 / (n (n - 1))) / mean(m), with x_i followed and
m_i given instructions of prompt i. lm-eval itself reports no error for those two.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def cli(*args) -> float:
    print("$ minitron", " ".join(args), flush=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True)
    return time.perf_counter() - t


def prompt_stderr(values: list) -> float:
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def ratio_stderr(followed: list, given: list) -> float:
    """Standard error of sum(followed) / sum(given) with prompts as the sampling unit."""
    n = len(given)
    p = sum(followed) / sum(given)
    resid = sum((x - p * m) ** 2 for x, m in zip(followed, given))
    return math.sqrt(resid / (n * (n - 1))) / (sum(given) / n)


def score(samples: Path) -> dict:
    """The four IFEval accuracies and their standard errors from lm-eval's per-prompt rows."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    out = {"prompts": len(rows)}
    for m in METRICS:
        if m.startswith("prompt_level"):
            v = [float(r[m]) for r in rows]
            out[m], out[m + "_stderr"] = sum(v) / len(v), prompt_stderr(v)
        else:
            x = [float(sum(r[m])) for r in rows]
            g = [float(len(r[m])) for r in rows]
            out[m], out[m + "_stderr"] = sum(x) / sum(g), ratio_stderr(x, g)
            out["instructions"] = int(sum(g))
    mean_len = [
        len(str(r["resps"][0][0] if isinstance(r["resps"][0], list) else r["resps"][0]))
        for r in rows
    ]
    out["mean_response_chars"] = sum(mean_len) / len(mean_len)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/default_v3", help="a finished `minitron run` directory")
    p.add_argument("--student", default="depth")
    p.add_argument("--sft-steps", type=int, default=40)
    p.add_argument("--pref-steps", type=int, default=40)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results/ifeval_mini.json")
    args = p.parse_args()
    run = Path(args.run)
    w = run / "bench_ifeval" / args.student
    distilled = run / "distill" / "final" / args.student
    if not distilled.exists():
        distilled = run / "distill" / args.student / "final" / "student"
    sft, pref = w / "sft", w / "pref"
    seconds = {}
    if not (sft / "final" / "policy").exists():
        seconds["sft"] = cli(
            "align",
            "--model",
            str(distilled),
            "--out",
            str(sft),
            "--algorithm",
            "sft",
            "--data",
            "builtin:sft",
            "optim.lr=1e-4",
            "optim.min_lr=1e-5",
            "optim.warmup_steps=5",
            f"schedule.steps={args.sft_steps}",
            "schedule.global_batch_size=8",
            "schedule.micro_batch_size=4",
            "progress=false",
        )
    aligned = pref / "round_2" / "final" / "policy"
    if not aligned.exists():
        seconds["rpo"] = cli(
            "align",
            "--model",
            str(sft / "final" / "policy"),
            "--out",
            str(pref),
            "--algorithm",
            "rpo",
            "--data",
            "builtin:preferences",
            "rounds=2",
            f"schedule.steps={args.pref_steps}",
            "schedule.global_batch_size=8",
            "schedule.micro_batch_size=4",
            "progress=false",
        )
    models = {
        "teacher": run / "checkpoints" / "teacher",
        f"{args.student} (distilled)": distilled,
        f"{args.student} (SFT)": sft / "final" / "policy",
        f"{args.student} (SFT + RPO)": aligned,
    }
    report = {
        "run": str(run),
        "student": args.student,
        "max_new_tokens": args.max_tokens,
        "limit": args.limit,
        "align_seconds": seconds,
        "models": {},
    }
    for name, path in models.items():
        tag = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "")
        samples, res = w / f"{tag}.samples.jsonl", w / f"{tag}.json"
        gen_s = None
        if not samples.exists():
            extra = [f"limit={args.limit}"] if args.limit else []
            gen_s = cli(
                "lm-eval",
                "--model",
                str(path),
                "--tasks",
                "ifeval_mini",
                "--apply_chat_template",
                "--out",
                str(res),
                "samples=" + str(samples),
                "batch_size=8",
                f"gen_kwargs=max_gen_toks={args.max_tokens}",
                *extra,
            )
        report["models"][name] = {"path": str(path), "seconds": gen_s, **score(samples)}
        print(name, json.dumps(report["models"][name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("| model | prompt strict | inst strict | prompt loose | inst loose |")
    print("|---|---|---|---|---|")
    for name, r in report["models"].items():
        cells = [f"{r[m]:.3f} ± {r[m + '_stderr']:.3f}" for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
