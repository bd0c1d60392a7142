"""Bar chart of speed-ups over the baseline model (like the paper's Figure 10)."""

from __future__ import annotations

from pathlib import Path


def speedup_chart(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["speedups"]  # [(model, backend, batch, prefill x, decode x)]
    labels = sorted({(r["backend"], r["batch"]) for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    width = 0.8 / max(len(models), 1)
    for ax, key, name in ((axes[0], "prefill", "prefill"), (axes[1], "decode", "decode")):
        for j, m in enumerate(models):
            vals = [
                next(
                    (r[key] for r in rows if r["model"] == m and (r["backend"], r["batch"]) == lb),
                    0.0,
                )
                for lb in labels
            ]
            xs = [i + j * width for i in range(len(labels))]
            bars = ax.bar(xs, vals, width, label=m)
            for x, v in zip(xs, vals):
                ax.text(x, v, f"{v:.2f}x", ha="center", va="bottom", fontsize=7)
            del bars
        ax.axhline(1.0, color="grey", lw=1, ls="--")
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(labels))])
        ax.set_xticklabels([f"{b}\nbatch {n}" for b, n in labels], fontsize=8)
        ax.set_ylabel(f"{name} speed-up over {report['baseline']}")
        ax.set_title(f"{name} tokens/s")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
