"""SmolLM2-135M pruned without retraining: activation vs magnitude vs random (width), and
Winogrande vs LM loss vs Block Influence (depth). Every step is the real CLI.

    python benchmarks/prune_compare.py [--work runs/bench] [--out benchmarks/results/prune_compare.json]

Scores: 256 calibration samples x 512 tokens of the built-in corpora. Width target:
hidden 576 -> 384, MLP 1536 -> 1024, heads 9 -> 6. Depth target: 30 -> 15 layers. The
depth search uses Winogrande items of seed 1234 (500) and 16 held-out windows;
every model is then scored on a different seeded 2,000-item Winogrande subset
(seed 42) and 32 held-out windows (seed 99), so selection and report do not share
a sample set. Finished steps are skipped on a rerun.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path


def cli(*args):
    print("$ minitron", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--out", default="benchmarks/results/prune_compare.json")
    args = p.parse_args()
    w = Path(args.work)
    data = w / "data"
    teacher = w / "teacher"
    if not (teacher / "manifest.json").exists():
        cli("import", "--hf", "smollm2-135m", "--out", str(teacher), "--overwrite")
    cli(
        "data",
        "prepare",
        "--tokenizer",
        "smollm2-135m",
        "--out",
        str(data),
        "inputs=[builtin:wiki,builtin:news,builtin:shakespeare]",
        "eod_token=<|endoftext|>",
    )
    scores = w / "scores_activation"
    if not scores.exists():
        cli(
            "score",
            "--model",
            str(teacher),
            "--out",
            str(scores),
            f"data.paths=[{data}]",
            "data.seq_length=512",
            "num_samples=256",
            "block_scores=true",
            "progress=false",
        )
    width = [
        "target.hidden_size=384",
        "target.ffn_hidden_size=1024",
        "target.num_attention_heads=6",
    ]
    search_task = (
        "depth.task={name: winogrande, path: 'builtin:winogrande', limit: 500, seed: 1234}"
    )
    search_loss = (
        "depth.loss={name: heldout, data: {paths: [" + str(data) + "], seq_length: 512}, "
        "num_samples: 16}"
    )
    variants = {
        "width_activation": width + [f"scores={scores}", "width_method=activation"],
        "width_magnitude": width + ["width_method=magnitude"],
        "width_random": width + ["width_method=random"],
        "depth_winogrande": ["target.num_layers=15", "depth.criterion=task", search_task],
        "depth_lm_loss": ["target.num_layers=15", "depth.criterion=lm_loss", search_loss],
        "depth_block_influence_contiguous": [
            "target.num_layers=15",
            f"scores={scores}",
            "depth.criterion=block_influence",
        ],
        "depth_block_influence_layers": [
            "target.num_layers=15",
            f"scores={scores}",
            "depth.criterion=block_influence",
            "depth.contiguous=false",
        ],
    }
    for name, overrides in variants.items():
        if not (w / name / "manifest.json").exists():
            cli(
                "prune",
                "--model",
                str(teacher),
                "--out",
                str(w / name),
                "--overwrite",
                "progress=false",
                *overrides,
            )
    report = {}
    for name in ["teacher", *variants]:
        res = w / f"eval_{name}.json"
        if not res.exists():
            cli(
                "eval",
                "--model",
                str(w / name),
                "--out",
                str(res),
                "progress=false",
                "tasks=[{name: winogrande, path: 'builtin:winogrande', limit: 2000, seed: 42}]",
                "loss=[{name: heldout, data: {paths: [" + str(data) + "], seq_length: 512, "
                "seed: 99}, num_samples: 32}]",
            )
        rows = {r["metric"]: r for r in json.loads(res.read_text())}
        manifest = json.loads((w / name / "manifest.json").read_text())
        depth = manifest.get("extra", {}).get("depth", {})
        from minitron.models.arch import ModelArch
        from minitron.models.params import count_params

        arch = ModelArch.from_dict(manifest["arch"])
        report[name] = {
            "winogrande": rows["acc"]["value"],
            "winogrande_stderr": rows["acc"]["stderr"],
            "loss": rows["loss"]["value"],
            "loss_stderr": rows["loss"]["stderr"],
            "non_embedding_params": count_params(arch)["non_embedding"],
            "dropped_layers": depth.get("drop", []),
        }
        print(name, report[name], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("| model | dropped layers | non-emb params | held-out loss | Winogrande (2,000) |")
    for name, r in report.items():
        print(
            f"| {name} | {r['dropped_layers'] or '-'} | {r['non_embedding_params']:,} | "
            f"{r['loss']:.3f} ± {r['loss_stderr']:.3f} | {r['winogrande']:.3f} ± "
            f"{r['winogrande_stderr']:.3f} |"
        )


if __name__ == "__main__":
    main()
