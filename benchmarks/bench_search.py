"""Architecture search on SmolLM2-135M at about 50% of its non-embedding parameters: every
candidate zero-shot and after a short distillation, the best few after a long one; rank
correlations; the winner against the embedded default's hand-picked students.

    python benchmarks/bench_search.py --run runs/default_v3 [--short 20] [--long 80] [--top 4] \
        [--set depth.criterion=block_influence]

Uses a finished `minitron run` directory (its teacher, scores and data). The search space is
examples/smollm2/search.yaml. The long distillation uses the embedded default's LR and batch
for as many steps as the run distilled its students (80), so the run's width and depth
students are compared at equal distillation tokens, on the same held-out windows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cli(*args) -> float:
    print("$ minitron", " ".join(args), flush=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True)
    return time.perf_counter() - t


def main():
    from minitron.search.rank import spearman

    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/default_v3")
    p.add_argument("--short", type=int, default=20)
    p.add_argument("--long", type=int, default=80)
    p.add_argument("--top", type=int, default=4)
    p.add_argument("--out", default="benchmarks/results/search.json")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value for both searches")
    args = p.parse_args()
    run = Path(args.run)
    common = [
        "--config",
        "examples/smollm2/search.yaml",
        f"model={run / 'checkpoints' / 'teacher'}",
        f"scores={run / 'scores'}",
        f"data.paths=[{run / 'data'}]",
        *args.set,
    ]
    short_dir, long_dir = run / "search_short", run / "search_long"
    seconds = {}
    seconds["short"] = cli(
        "search", *common, f"out={short_dir}", f"distill.schedule.steps={args.short}"
    )
    short = json.loads((short_dir / "ranking.json").read_text())
    best = [c["name"] for c in short["candidates"]][: args.top]
    for name in best:  # the long search reuses the short one's pruned candidates
        src, dst = short_dir / "candidates" / name, long_dir / "candidates" / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("arch.json", "zero_shot.json"):
            if not (dst / f).exists():
                shutil.copy2(src / f, dst / f)
        if not (dst / "pruned").exists():
            (dst / "pruned").symlink_to((src / "pruned").resolve())
    seconds["long"] = cli(
        "search",
        *common,
        f"out={long_dir}",
        f"distill.schedule.steps={args.long}",
        f"distill.group_size={args.top}",
        "only=[" + ",".join(best) + "]",
    )
    long = {c["name"]: c for c in json.loads((long_dir / "ranking.json").read_text())["candidates"]}
    rows = []
    for c in short["candidates"]:
        rows.append(
            {
                "name": c["name"],
                "params": c["params"],
                "zero_shot": c["zero_shot"],
                "short": c["distilled"],
                "long": long[c["name"]]["distilled"] if c["name"] in long else None,
                "long_stderr": long[c["name"]]["distilled_stderr"] if c["name"] in long else None,
            }
        )
    both = [r for r in rows if r["long"] is not None]
    # the hand-picked students of the run, on the search's held-out windows
    hand = {}
    for name in ("width", "depth"):
        ck = run / "distill" / "final" / name
        if ck.exists():
            out = run / "search_long" / f"hand_{name}.json"
            cli(
                "eval",
                "--model",
                str(ck),
                "--out",
                str(out),
                "progress=false",
                "loss=[{name: heldout, split: valid, num_samples: 16, data: {paths: ["
                + str(run / "data")
                + '], seq_length: 256, split: "96,2,2", seed: 99}}]',
            )
            rec = next(r for r in json.loads(out.read_text()) if r["metric"] == "loss")
            hand[name] = {"loss": rec["value"], "stderr": rec["stderr"]}
    groups = {}
    for d in (short_dir, long_dir):
        for f in d.glob("candidates/*/distilled.json"):
            r = json.loads(f.read_text())
            groups[(d.name, r["group"])] = r["group_seconds"]
    report = {
        "candidates": rows,
        "spearman_zero_shot_vs_short_all": spearman(
            [r["zero_shot"] for r in rows], [r["short"] for r in rows]
        ),
        "spearman_zero_shot_vs_long": spearman(
            [r["zero_shot"] for r in both], [r["long"] for r in both]
        ),
        "spearman_short_vs_long": spearman([r["short"] for r in both], [r["long"] for r in both]),
        "long_winner": min(both, key=lambda r: r["long"])["name"] if both else None,
        "hand_picked_80_steps": hand,
        "seconds": seconds,
        "distill_group_seconds": {f"{a}/{b}": s for (a, b), s in groups.items()},
        "short_steps": args.short,
        "long_steps": args.long,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
