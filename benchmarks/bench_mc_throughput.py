"""Winogrande scoring throughput: minitron (megatron-core) vs transformers, same requests.

    python benchmarks/bench_mc_throughput.py [--items 300 --batch-size 32 --repeats 3]

Both score the identical tokenized requests (2 per item, lm-eval partial
scoring), sorted by length and right-padded into the same batches; transformers
computes log_softmax over its logits and sums the continuation log-probabilities,
minitron uses its vocab-parallel cross-entropy path. Runs alternate; the median
is reported, with the agreement of the two sets of log-likelihoods.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def hf_score(hf, requests, batch_size):
    from minitron.eval.scoring import _batches

    out = [0.0] * len(requests)
    with torch.no_grad():
        for index, b in _batches(requests, batch_size, 2048, 0):
            logp = torch.log_softmax(hf(b["tokens"]).logits.float(), -1)
            tok_lp = logp.gather(-1, b["labels"].unsqueeze(-1)).squeeze(-1)
            for j, i in enumerate(index):
                out[i] = float((tok_lp[j] * b["loss_mask"][j]).sum())
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()

    from transformers import AutoModelForCausalLM

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config.schema import MCTaskConfig
    from minitron.data.tokenizer import load_tokenizer
    from minitron.eval.evaluator import Evaluator
    from minitron.eval.scoring import score_requests
    from minitron.models.sources import resolve_model
    from minitron.parallel import runtime

    quiet_megatron()
    runtime.init(1, 1)
    model, arch, _ = load_model("smollm2-135m")
    hf = AutoModelForCausalLM.from_pretrained(
        resolve_model("smollm2-135m"), dtype=torch.float32
    ).eval()
    ev = Evaluator(model, arch, load_tokenizer("smollm2-135m"), batch_size=args.batch_size)
    task = ev.prepare(MCTaskConfig(limit=args.items, seed=0))
    reqs = task.requests

    def ours_fn():
        return [
            ll for ll, _ in score_requests(model, reqs, arch.vocab_size, batch_size=args.batch_size)
        ]

    def theirs_fn():
        return hf_score(hf, reqs, args.batch_size)

    a, b = ours_fn(), theirs_fn()  # warm-up, and the agreement check
    ta, tb = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours_fn()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs_fn()
        tb.append(time.perf_counter() - t)
    ma, mb = statistics.median(ta), statistics.median(tb)
    res = {
        "items": args.items,
        "requests": len(reqs),
        "batch_size": args.batch_size,
        "tokens": sum(len(r.context) + len(r.continuation) for r in reqs),
        "minitron_items_per_s": round(args.items / ma, 2),
        "transformers_items_per_s": round(args.items / mb, 2),
        "ratio": round(mb / ma, 3),
        "max_abs_ll_diff": max(abs(x - y) for x, y in zip(a, b)),
    }
    print(json.dumps(res, indent=2))
    print(
        f"| Winogrande 0-shot, {args.items} items, batch {args.batch_size} | "
        f"{res['minitron_items_per_s']} | {res['transformers_items_per_s']} | {res['ratio']} |"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
