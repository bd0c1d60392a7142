"""Cost of the CPU compatibility layer's TorchFunctionMode on a forward pass.

    python benchmarks/bench_compat_overhead.py [--batch 4 --seq 512 --repeats 7]

The mode is needed only for a few CUDA-device calls (first forward, checkpoint
saves); after a warm-up forward, the same model runs with the mode on and off,
alternately, and the medians are compared.
"""

import argparse
import json
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.parallel import cpu_compat, runtime

    quiet_megatron()
    runtime.init(1, 1)
    model, arch, _ = load_model(args.model)
    model.eval()
    x = torch.randint(0, arch.vocab_size, (args.batch, args.seq))
    mode = cpu_compat._MODE

    def fwd():
        t = time.perf_counter()
        with torch.no_grad():
            model(x, position_ids=None, attention_mask=None)
        return time.perf_counter() - t

    fwd()  # moves RoPE buffers etc. while the mode is on
    on, off = [], []
    for _ in range(args.repeats):
        on.append(fwd())
        mode.__exit__(None, None, None)
        try:
            off.append(fwd())
        finally:
            mode.__enter__()
    a, b = statistics.median(on), statistics.median(off)
    res = {
        "with_mode_s": round(a, 4),
        "without_mode_s": round(b, 4),
        "overhead_pct": round(100 * (a - b) / b, 2),
        "batch": args.batch,
        "seq": args.seq,
    }
    print(json.dumps(res, indent=2))
    print(
        f"| TorchFunctionMode overhead, SmolLM2 forward b={args.batch} s={args.seq} | "
        f"{a:.3f} s vs {b:.3f} s | {res['overhead_pct']:+.1f}% |"
    )


if __name__ == "__main__":
    main()
