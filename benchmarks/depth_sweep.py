"""Depth sweep: Winogrande accuracy and LM loss with each contiguous block of k layers dropped.

    python benchmarks/depth_sweep.py --ks 6 15 --limit 500 --out benchmarks/results/depth_sweep.json \
        --plot docs/figures/depth_sweep.png

The small-scale analog of the paper's Figures 8-9, on SmolLM2-135M (30 layers):
for every start s, layers s..s+k-1 are skipped through minitron's layer-skip hook
(no weights copied or changed) and the model is scored on a fixed seeded
Winogrande subset (0-shot, lm-eval partial scoring) and on held-out text of the
three built-in corpora. Results are saved after every block, so an interrupted
sweep resumes.
"""

import argparse
import json
import time
from pathlib import Path


def plot(res: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({int(k) for k in res["blocks"]})
    fig, axes = plt.subplots(1, len(ks), figsize=(6.5 * len(ks), 4.2), squeeze=False)
    base = res["baseline"]
    for ax, k in zip(axes[0], ks):
        rows = sorted(res["blocks"][str(k)].values(), key=lambda r: r["start"])
        xs = [r["start"] for r in rows]
        ax.errorbar(
            xs,
            [r["acc"] for r in rows],
            yerr=[r["acc_stderr"] for r in rows],
            fmt="o-",
            color="tab:blue",
            ms=3,
            capsize=2,
            label="Winogrande acc",
        )
        ax.axhline(base["acc"], color="tab:blue", ls="--", lw=1, label="full model acc")
        ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel(f"first dropped layer (block of {k} of {res['num_layers']})")
        ax.set_ylabel("Winogrande accuracy (0-shot)", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(xs, [r["loss"] for r in rows], "s-", color="tab:red", ms=3, label="LM loss")
        ax2.axhline(base["loss"], color="tab:red", ls="--", lw=1, label="full model loss")
        ax2.set_ylabel("held-out LM loss", color="tab:red")
        ax.set_title(f"SmolLM2-135M, drop {k} contiguous layers")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--ks", type=int, nargs="+", default=[6, 15])
    p.add_argument("--limit", type=int, default=500, help="Winogrande items (seeded subset)")
    p.add_argument("--loss-samples", type=int, default=16)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--data", default="runs/bench/data", help="where the corpora are prepared")
    p.add_argument("--out", default="benchmarks/results/depth_sweep.json")
    p.add_argument("--plot", default="docs/figures/depth_sweep.png")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.is_file() else {}
    if args.plot_only:
        plot(res, Path(args.plot))
        return

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config import loader, schema
    from minitron.data.prepare import prepare
    from minitron.data.tokenizer import load_tokenizer
    from minitron.eval.evaluator import Evaluator
    from minitron.eval.layer_skip import skip_layers
    from minitron.parallel import runtime

    quiet_megatron()
    prepare(
        loader.load(
            schema.PrepareConfig,
            values={
                "inputs": ["builtin:wiki", "builtin:news", "builtin:shakespeare"],
                "tokenizer": args.model,
                "out": args.data,
                "eod_token": "<|endoftext|>",
            },
        ),
        log=print,
    )
    runtime.init(1, 1)
    model, arch, _ = load_model(args.model)
    ev = Evaluator(model, arch, load_tokenizer(args.model), batch_size=32, micro_batch_size=4)
    wino = ev.prepare(schema.MCTaskConfig(limit=args.limit, seed=1234))
    loss_task = loader.load(
        schema.LossTaskConfig,
        values={
            "name": "builtin",
            "num_samples": args.loss_samples,
            "data": {"paths": [args.data], "seq_length": args.seq},
        },
    )

    def score(drop):
        t = time.perf_counter()
        with skip_layers(model, drop):
            mc, lm = ev.multiple_choice(wino), ev.loss(loss_task)
        return {
            "acc": mc["acc"],
            "acc_stderr": mc["acc_stderr"],
            "loss": lm["loss"],
            "loss_stderr": lm["stderr"],
            "seconds": round(time.perf_counter() - t, 1),
        }

    res.setdefault("model", args.model)
    res.update(
        num_layers=arch.num_layers,
        winogrande_items=args.limit,
        loss_samples=args.loss_samples,
        seq_length=args.seq,
        blocks=res.get("blocks", {}),
    )
    if "baseline" not in res:
        res["baseline"] = score([])
        print("baseline", res["baseline"])
        out.write_text(json.dumps(res, indent=2))
    for k in args.ks:
        done = res["blocks"].setdefault(str(k), {})
        for start in range(arch.num_layers - k + 1):
            if str(start) in done:
                continue
            row = {
                "start": start,
                "layers": [start, start + k - 1],
                **score(range(start, start + k)),
            }
            done[str(start)] = row
            print(
                f"k={k} drop {start}-{start + k - 1}: acc {row['acc']:.3f} loss {row['loss']:.3f}"
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2))
    plot(res, Path(args.plot))


if __name__ == "__main__":
    main()
