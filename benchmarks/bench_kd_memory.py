"""Peak memory of the distillation loss (forward KL + backward), vocabulary 128,256:
a naive autograd implementation vs minitron's loss unchunked and chunked.

    python benchmarks/bench_kd_memory.py [--tokens 2048 --vocab 128256 --chunk 256]

Each variant runs in a fresh process: it creates student and teacher logits
``[tokens, vocab]`` directly in the dtype (fp32 and bf16 inputs), resets the kernel's
peak-RSS counter (``/proc/self/clear_refs``), then computes the loss and its backward;
the figure is the peak RSS (VmHWM) above the RSS before the loss, i.e. the memory the
loss itself needs, including the student logits' gradient (one ``[tokens, vocab]``
tensor that any implementation must produce).
"""

import argparse
import json
import os
import subprocess
import sys


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024


def naive(s, t, mask):
    """What one writes with autograd: fp32 log-softmaxes and torch's KL, full vocabulary."""
    import torch.nn.functional as F

    lp, lq = F.log_softmax(s.float(), -1), F.log_softmax(t.float(), -1)
    d = F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
    return (d * mask).sum() / mask.sum()


def child(tokens, vocab, variant, chunk, dtype):
    import torch

    from minitron.distill.losses import distill_loss

    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    s = torch.randn(tokens, vocab, generator=g, dtype=dt).requires_grad_(True)
    t = torch.randn(tokens, vocab, generator=g, dtype=dt)
    mask = torch.ones(tokens)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status("VmRSS:")
    if variant == "naive":
        loss = naive(s, t, mask)
    else:
        loss = distill_loss(s, t, mask, chunk_size=chunk)
    loss.backward()
    print(
        json.dumps(
            {
                "loss_mb": _status("VmHWM:") - base,
                "value": loss.item(),
                "logits_mb": s.numel() * s.element_size() / 2**20,
            }
        )
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--out", default="benchmarks/results/kd_memory.json")
    p.add_argument("--child", nargs=5)
    args = p.parse_args()
    if args.child:
        t, v, variant, c, d = args.child
        return child(int(t), int(v), variant, int(c), d)
    variants = {
        "naive autograd": ("naive", args.tokens),
        "minitron unchunked": ("ours", args.tokens),
        f"minitron chunked ({args.chunk})": ("ours", args.chunk),
    }
    results = {}
    for dtype in ("float32", "bfloat16"):
        rows = {}
        for name, (variant, chunk) in variants.items():
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(args.tokens),
                    str(args.vocab),
                    variant,
                    str(chunk),
                    dtype,
                ],
                capture_output=True,
                text=True,
                env=dict(os.environ, OMP_NUM_THREADS="2"),
                check=True,
            )
            rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        results[dtype] = rows
        n = rows["naive autograd"]["loss_mb"]
        logits = rows["naive autograd"]["logits_mb"]
        print(f"{dtype} logits, {args.tokens} tokens x {args.vocab} vocab ({logits:.0f} MB each):")
        for name, r in rows.items():
            print(
                f"| {name} | {r['loss_mb']:.0f} MB | {r['loss_mb'] / n:.3f} of naive | "
                f"loss {r['value']:.4f} |"
            )
    from pathlib import Path

    Path(args.out).write_text(
        json.dumps(
            {"tokens": args.tokens, "vocab": args.vocab, "chunk": args.chunk, "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
