"""The embedded default's students, measured: held-out loss on the test share, the recovered
fraction of the pruning gap, and Winogrande on 1,000 items with standard errors.

    python benchmarks/bench_default_quality.py --run runs/default_after \
        [--winogrande 1000] [--loss-samples 64] [--out benchmarks/results/default_after.json]
    python benchmarks/bench_default_quality.py --run runs/default_before \
        --shared-from benchmarks/results/default_after.json --out benchmarks/results/default_before.json

For a finished ``minitron run`` directory: the teacher, each pruned student and each
distilled student, each scored by ``minitron eval`` in its own process on the same
held-out windows (the run's test share, which no stage trains on or selects with) and the
same seeded Winogrande subset. Also reads the run's stage times from its manifest.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def models(run: Path, manifest: dict) -> dict:
    cfg = manifest["config"]
    out = {"teacher": run / "checkpoints" / "teacher"}
    together = cfg["distill"].get("together", False)
    for st in cfg["students"]:
        n = st["name"]
        out[f"{n} (pruned)"] = run / "checkpoints" / n
        out[f"{n} (distilled)"] = (
            run / "distill" / "final" / n if together else run / "distill" / n / "final" / "student"
        )
    return out


def evaluate(path: Path, run: Path, split: str, args) -> dict:
    cfg = {
        "model": str(path),
        "progress": False,
        "tasks": [
            {
                "name": "winogrande",
                "path": "builtin:winogrande",
                "limit": args.winogrande,
                "seed": 42,
            }
        ],
        "loss": [
            {
                "name": "heldout",
                "split": split,
                "num_samples": args.loss_samples,
                "data": {
                    "paths": [str(run / "data")],
                    "seq_length": 256,
                    "split": args.split,
                    "seed": 99,
                },
            }
        ],
    }
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "e.yaml").write_text(yaml.safe_dump(cfg))
        out = Path(d) / "r.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "minitron",
                "eval",
                "--config",
                str(Path(d) / "e.yaml"),
                f"out={out}",
            ],
            check=True,
            capture_output=True,
        )
        rows = json.loads(out.read_text())
    get = {(r["task"], r["metric"]): r for r in rows}
    loss, acc = get[("heldout", "loss")], get[("winogrande", "acc")]
    return {
        "loss": loss["value"],
        "loss_stderr": loss["stderr"],
        "winogrande": acc["value"],
        "winogrande_stderr": acc["stderr"],
        "winogrande_n": acc["n"],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    p.add_argument("--winogrande", type=int, default=1000)
    p.add_argument("--loss-samples", type=int, default=64)
    p.add_argument(
        "--shared-from",
        help="a result of this script on a run with the same "
        "teacher and pruned students (same stages up to prune): reuse their scores",
    )
    p.add_argument("--out")
    args = p.parse_args()
    run = Path(args.run)
    manifest = json.loads((run / "manifest.json").read_text())
    args.split = manifest["config"]["data"]["split"]
    split = "test" if float(args.split.split(",")[2]) > 0 else "valid"
    shared = json.loads(Path(args.shared_from).read_text())["scores"] if args.shared_from else {}
    scores = {
        name: shared.get(name)
        if "distilled" not in name and name in shared
        else evaluate(path, run, split, args)
        for name, path in models(run, manifest).items()
    }
    teacher = scores["teacher"]["loss"]
    recovered = {}
    for st in manifest["config"]["students"]:
        n = st["name"]
        pruned, distilled = scores[f"{n} (pruned)"]["loss"], scores[f"{n} (distilled)"]["loss"]
        recovered[n] = round((pruned - distilled) / (pruned - teacher), 3)
    stages = {k: round(v.get("seconds", 0), 1) for k, v in manifest["stages"].items()}
    result = {
        "run": str(run),
        "heldout_split": split,
        "loss_samples": args.loss_samples,
        "scores": scores,
        "recovered_fraction": recovered,
        "stage_seconds": stages,
        "total_stage_seconds": round(sum(stages.values()), 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
