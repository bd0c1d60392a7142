"""How closely minitron's megatron-core SmolLM2 matches transformers on real text.

    python benchmarks/check_logits.py [--docs 8 --tokens 256]

Scores the first ``--tokens`` tokens of ``--docs`` news articles (built-in corpus)
with both implementations in fp32 and reports the max and mean absolute logit
difference and how often the top-1 token agrees.
"""

import argparse
import json

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--tokens", type=int, default=256)
    args = p.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.data.builtin import builtin_documents
    from minitron.eval.logits import full_logits
    from minitron.models.sources import resolve_model
    from minitron.parallel import runtime

    quiet_megatron()
    src = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(src)
    long = (d for d in builtin_documents("news") if len(tok(d).input_ids) >= args.tokens)
    docs = [d for _, d in zip(range(args.docs), long)]
    ids = torch.stack([torch.tensor(tok(d).input_ids[: args.tokens]) for d in docs])
    runtime.init(1, 1)
    model, arch, _ = load_model(str(src))
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    ours = torch.cat([full_logits(model, ids[i : i + 1], arch.vocab_size) for i in range(len(ids))])
    with torch.no_grad():
        ref = torch.cat([hf(ids[i : i + 1]).logits for i in range(len(ids))])
    d = (ours - ref).abs()
    res = {
        "tokens": ids.numel(),
        "max_abs_diff": d.max().item(),
        "mean_abs_diff": d.mean().item(),
        "top1_agreement": (ours.argmax(-1) == ref.argmax(-1)).float().mean().item(),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
