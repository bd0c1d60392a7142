"""Decode speed of generation on megatron-core's static inference engine (``minitron
generate``) against transformers' ``generate``, on SmolLM2-135M, same prompts, fp32.

    python benchmarks/bench_generate.py [--rounds 3] [--new 32] [--out benchmarks/results/generate.json]

Both backends run in this one process, alternating within every round (the order rotates
between rounds, ``minitron.bench.summary.round_order``). Prompts are cut to the same token
length, so neither side pads. Decode tokens/s = (new - 1) x batch / (t(new) - t(1)): the
time of a 1-token generation (the prefill) is subtracted from a ``new``-token one, so the
figure is the steady decode rate of each backend. Greedy; a completion that ends early
(EOS) is counted with the tokens it really produced.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXTS = [
    "The history of the city begins in the early middle ages, when a small group of",
    "In the morning the fishermen went down to the harbour to check their nets and",
    "Scientists studying the behaviour of honey bees have found that the insects can",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and enough milk",
    "When the train finally arrived at the station, the passengers who had waited for",
    "The committee published its report on Tuesday, saying that the new rules would",
    "Old maps of the region show a river that no longer exists, because the farmers",
    "During the long winter the village school had only one teacher, who taught every",
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=12)
    p.add_argument("--out")
    args = p.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minitron.bench.summary import round_order, spread
    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config.generate import SamplingConfig
    from minitron.generate.engine import Generator
    from minitron.models.sources import resolve_model
    from minitron.parallel import runtime

    quiet_megatron()
    runtime.init(1, 1)
    src = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(src)
    model, arch, _ = load_model(str(src), "float32")
    gen = Generator(model, arch, tok, batch_size=8)
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    prompts = [tok(t)["input_ids"][: args.prompt_tokens] for t in TEXTS]
    assert all(len(q) == args.prompt_tokens for q in prompts)

    def run_mcore(batch, n):
        t0 = time.perf_counter()
        done = gen.generate(batch, SamplingConfig(max_new_tokens=n))
        return time.perf_counter() - t0, sum(len(c.tokens) + (c.finish == "eos") for c in done)

    @torch.inference_mode()
    def run_hf(batch, n):
        ids = torch.tensor(batch)
        t0 = time.perf_counter()
        out = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.eos_token_id,
        )
        return time.perf_counter() - t0, int((out[:, ids.shape[1] :] != -1).sum())

    backends = {"megatron-core engine": run_mcore, "transformers generate": run_hf}
    rates: dict = {(b, bs): [] for b in backends for bs in (1, 8)}
    for bs in (1, 8):
        batch = prompts[:bs]
        for fn in backends.values():  # warm-up
            fn(batch, 2)
        for r in range(args.rounds):
            for name in round_order(list(backends), r):
                t1, _ = backends[name](batch, 1)
                tn, made = backends[name](batch, args.new)
                rates[(name, bs)].append((made - bs) / (tn - t1))
    rows = []
    for (name, bs), v in rates.items():
        rows.append(
            {
                "backend": name,
                "batch": bs,
                "decode_tokens_per_s": statistics.median(v),
                "spread": spread(v),
                "rounds": v,
            }
        )
    ratio = {
        bs: statistics.median(rates[("megatron-core engine", bs)])
        / statistics.median(rates[("transformers generate", bs)])
        for bs in (1, 8)
    }
    result = {
        "model": "smollm2-135m",
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new,
        "rounds": args.rounds,
        "rows": rows,
        "ratio_mcore_over_hf": ratio,
    }
    for r in rows:
        print(
            f"{r['backend']:<24} batch {r['batch']}: {r['decode_tokens_per_s']:7.1f} tok/s "
            f"(spread {r['spread']:.0%})"
        )
    print("megatron-core / transformers:", {k: round(v, 2) for k, v in ratio.items()})
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
