"""Peak memory of the distillation loss: chunked vs unchunked, vocabulary 128,256.

    python benchmarks/bench_kd_memory.py [--tokens 2048 --vocab 128256 --chunk 256]

Each variant runs in a fresh process: it allocates student and teacher logits
``[tokens, vocab]`` (fp32 and bf16 inputs), records its RSS, then computes the
forward KL and its backward; the figure is the peak RSS above that baseline
(``ru_maxrss`` of the child), i.e. the memory the loss itself needs.
"""

import argparse
import json
import os
import subprocess
import sys


def child(tokens, vocab, chunk, dtype):
    import resource

    import torch

    from minitron.distill.losses import distill_loss

    g = torch.Generator().manual_seed(0)
    s = torch.randn(tokens, vocab, generator=g).to(getattr(torch, dtype)).requires_grad_(True)
    t = torch.randn(tokens, vocab, generator=g).to(getattr(torch, dtype))
    mask = torch.ones(tokens)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = distill_loss(s, t, mask, chunk_size=chunk)
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"loss_mb": (peak - base) / 1024, "logits_mb": s.numel() * s.element_size() / 2**20}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--child", nargs=4)
    args = p.parse_args()
    if args.child:
        t, v, c, d = args.child
        return child(int(t), int(v), int(c), d)
    rows = {}
    for dtype in ("float32", "bfloat16"):
        for name, chunk in (("unchunked", args.tokens), ("chunked", args.chunk)):
            out = subprocess.run([sys.executable, __file__, "--child", str(args.tokens),
                                  str(args.vocab), str(chunk), dtype], capture_output=True,
                                 text=True, env=dict(os.environ, OMP_NUM_THREADS="2"), check=True)
            rows[(dtype, name)] = json.loads(out.stdout.strip().splitlines()[-1])
        a, b = rows[(dtype, "unchunked")]["loss_mb"], rows[(dtype, "chunked")]["loss_mb"]
        print(f"| {dtype} logits, {args.tokens} tokens x {args.vocab} vocab "
              f"({rows[(dtype, 'chunked')]['logits_mb']:.0f} MB each) | unchunked {a:.0f} MB | "
              f"chunked ({args.chunk} tokens) {b:.0f} MB | ratio {b / a:.3f} |")


if __name__ == "__main__":
    main()
