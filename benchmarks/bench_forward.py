"""Forward throughput: minitron's megatron-core model vs transformers, same model, same batch.

    python benchmarks/bench_forward.py                       # SmolLM2-135M, CPU, fp32
    python benchmarks/bench_forward.py --device cuda --dtype bfloat16 --batch 8 --seq 2048 \
        --random-config examples/smollm2-135m/config.json     # GPU, random weights

The two models run alternately (A, B, A, B, ...) after a warm-up, so machine noise
hits both; the figure is the median of the repeats. Two modes: "logits" (the
forward returns [b, s, vocab] logits) and "loss" (the forward returns the LM loss
from labels, as training and evaluation use it).
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(fn, sync):
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m", help="embedded name or HF directory")
    p.add_argument("--random-config", help="use random weights for this HF config.json instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.models.sources import resolve_model
    from minitron.parallel import runtime

    quiet_megatron()
    dtype = getattr(torch, args.dtype)
    if args.random_config:
        src = Path(tempfile.mkdtemp()) / "random"
        torch.manual_seed(0)
        cfg = AutoConfig.from_pretrained(Path(args.random_config).parent)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(src)
    else:
        src = resolve_model(args.model)
    runtime.init(1, 1)
    mc, arch, _ = load_model(str(src), args.dtype)
    mc.eval()
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=dtype).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, arch.vocab_size, (args.batch, args.seq), generator=g).to(args.device)
    y = torch.randint(0, arch.vocab_size, (args.batch, args.seq), generator=g).to(args.device)
    fns = {
        "logits": (lambda: mc(x, position_ids=None, attention_mask=None), lambda: hf(x).logits),
        "loss": (
            lambda: mc(x, position_ids=None, attention_mask=None, labels=y).mean(),
            lambda: hf(x, labels=y).loss,
        ),
    }
    tokens = args.batch * args.seq
    result = {
        "model": args.random_config or args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "modes": {},
    }
    with torch.no_grad():
        for mode, (a, b) in fns.items():
            a(), b()  # warm-up
            ta, tb = [], []
            for _ in range(args.repeats):
                ta.append(timed(a, sync))
                tb.append(timed(b, sync))
            ma, mb = statistics.median(ta), statistics.median(tb)
            result["modes"][mode] = {
                "minitron_tokens_per_s": round(tokens / ma, 1),
                "transformers_tokens_per_s": round(tokens / mb, 1),
                "ratio": round(mb / ma, 3),
            }
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(result, indent=2))
    for mode, r in result["modes"].items():
        print(
            f"| {mode} | {args.device} {args.dtype} b={args.batch} s={args.seq} | "
            f"{r['minitron_tokens_per_s']:,.0f} | {r['transformers_tokens_per_s']:,.0f} | "
            f"{r['ratio']:.2f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
