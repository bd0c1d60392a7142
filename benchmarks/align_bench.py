"""Alignment of the distilled SmolLM2 student: SFT, then two rounds of RPO, on the built-in
offline set; the alignment tax on Winogrande and held-out loss; RPO vs SFT step time.

    python benchmarks/align_bench.py [--student runs/bench/ablation_e/final/student]

Preference metrics are measured on the 122 held-out pairs (builtin:preferences:valid)
against the SFT model as reference; Winogrande on 1,000 items (seed 42, 0-shot) and
held-out LM loss on 16 windows x 256 tokens of the built-in corpora (seed 99).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def cli(*args):
    print("$ minitron", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "minitron", *args], check=True)


def preference_metrics(models: dict, reference: str) -> dict:
    from minitron.align import builtin
    from minitron.align.data import ChatRenderer, load_pairs, pair_rows
    from minitron.align.steps import PreferenceStep
    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config import loader
    from minitron.config.align import AlignConfig
    from minitron.data.tokenizer import load_tokenizer
    from minitron.parallel import runtime
    from minitron.train import trainable

    quiet_megatron()
    runtime.init(1, 1)
    cfg = loader.load(
        AlignConfig,
        values={
            "model": reference,
            "out": "/tmp/unused-align",
            "data": "builtin:preferences",
            "algorithm": "rpo",
            "beta": 0.1,
            "eta": 5.0,
        },
    )
    renderer = ChatRenderer(load_tokenizer(reference))
    pairs = load_pairs(builtin.rows("builtin:preferences:valid"), renderer, 512, 1.0, 0.0)
    ref, _, _ = load_model(reference)
    trainable.freeze(ref)
    ref.eval()
    out = {}
    for name, path in models.items():
        policy, _, _ = load_model(path)
        policy.eval()
        step = PreferenceStep(policy, ref, cfg)
        mbs = [pair_rows(pairs[i : i + 4]) for i in range(0, len(pairs), 4)]
        out[name] = step.evaluate(mbs)
    return out


def step_times(model: str, repeats: int = 3) -> dict:
    """Seconds per step on one batch of 8 pairs: RPO (policy fwd/bwd on 16 rows + reference
    forward) vs SFT on the same 8 prompts with their chosen answers."""
    from minitron.align import builtin
    from minitron.align.data import ChatRenderer, load_pairs, load_sft, pack, pair_rows
    from minitron.align.steps import PreferenceStep, sft_step
    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config import loader
    from minitron.config.align import AlignConfig
    from minitron.data.tokenizer import load_tokenizer
    from minitron.parallel import runtime
    from minitron.train import trainable

    quiet_megatron()
    runtime.init(1, 1)
    cfg = loader.load(
        AlignConfig,
        values={
            "model": model,
            "out": "/tmp/unused-align",
            "data": "builtin:preferences",
            "algorithm": "rpo",
        },
    )
    renderer = ChatRenderer(load_tokenizer(model))
    rows = builtin.rows("builtin:preferences")[:8]
    pairs = load_pairs(rows, renderer, 512, 1.0, 0.0)
    sft_rows = [(w, {"prompt": r["prompt"], "response": r["chosen"]}) for w, r in rows]
    sft = [
        r
        for ex in load_sft(sft_rows, renderer, 512)
        for r in pack([ex], max(len(e.ids) for e in load_sft(sft_rows, renderer, 512)))
    ]
    import torch

    sft_batch = {k: torch.stack([r[k] for r in sft]) for k in sft[0]}
    policy, _, _ = load_model(model)
    ref, _, _ = load_model(model)
    trainable.freeze(ref)
    step = PreferenceStep(policy, ref, cfg)
    fns = {
        "rpo": lambda: step.step([pair_rows(pairs)]),
        "sft": lambda: sft_step(policy, [sft_batch]),
    }
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            policy.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rpo_s": med["rpo"], "sft_s": med["sft"], "ratio": med["rpo"] / med["sft"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--student", default="runs/bench/ablation_e/final/student")
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--out", default="benchmarks/results/alignment.json")
    args = p.parse_args()
    w = Path(args.work)
    cli(
        "align",
        "--model",
        args.student,
        "--out",
        str(w / "align_sft"),
        "--algorithm",
        "sft",
        "--data",
        "builtin:sft",
        "optim.lr=1e-4",
        "optim.min_lr=1e-5",
        "optim.warmup_steps=5",
        "schedule.steps=60",
        "schedule.global_batch_size=8",
        "schedule.micro_batch_size=4",
        "schedule.eval_every=20",
        "schedule.save_every=20",
        "progress=false",
    )
    sft = str(w / "align_sft" / "final" / "policy")
    times = step_times(sft)  # before the long runs, so nothing else shares the cores
    cli(
        "align",
        "--model",
        sft,
        "--out",
        str(w / "align_rpo"),
        "--algorithm",
        "rpo",
        "--data",
        "builtin:preferences",
        "rounds=2",
        "beta=0.1",
        "eta=5.0",
        "optim.lr=5e-6",
        "optim.min_lr=5e-7",
        "optim.warmup_steps=3",
        "schedule.steps=20",
        "schedule.global_batch_size=8",
        "schedule.micro_batch_size=4",
        "schedule.eval_every=10",
        "schedule.save_every=10",
        "progress=false",
    )
    models = {
        "distilled": args.student,
        "sft": sft,
        "rpo_round1": str(w / "align_rpo" / "round_1" / "final" / "policy"),
        "rpo_round2": str(w / "align_rpo" / "round_2" / "final" / "policy"),
    }
    report = {"preferences": None, "quality": {}}
    for name, path in models.items():
        res = w / f"align_eval_{name}.json"
        if not res.exists():
            cli(
                "eval",
                "--model",
                path,
                "--out",
                str(res),
                "progress=false",
                "tasks=[{name: winogrande, path: 'builtin:winogrande', limit: 1000, seed: 42}]",
                "loss=[{name: heldout, data: {paths: [" + str(w / "data") + "], seq_length: 256, "
                "seed: 99}, num_samples: 16}]",
            )
        rows = {r["metric"]: r for r in json.loads(res.read_text())}
        report["quality"][name] = {
            "winogrande": rows["acc"]["value"],
            "winogrande_stderr": rows["acc"]["stderr"],
            "loss": rows["loss"]["value"],
            "loss_stderr": rows["loss"]["stderr"],
        }
    report["preferences"] = preference_metrics(models, sft)
    report["step_time"] = times
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
