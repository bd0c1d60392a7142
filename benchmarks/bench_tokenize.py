"""Tokenization throughput of `minitron data prepare` on the built-in corpora.

    python benchmarks/bench_tokenize.py [--tokenizer smollm2-135m] [--out results.json]

Reports, per corpus, the tokenize-and-write loop (tokens/s from prepare's own
stats) and the whole command's wall time including reading the corpora.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", default="smollm2-135m")
    p.add_argument("--out")
    args = p.parse_args()

    from minitron.config import loader, schema
    from minitron.data.prepare import prepare

    out = Path(tempfile.mkdtemp())
    cfg = loader.load(schema.PrepareConfig, values={
        "inputs": ["builtin:wiki", "builtin:news", "builtin:shakespeare"],
        "tokenizer": args.tokenizer, "out": str(out), "eod_token": "<|endoftext|>"})
    t = time.perf_counter()
    index = prepare(cfg, log=lambda s: None)
    wall = time.perf_counter() - t
    tokens = sum(d["tokens"] for d in index["datasets"])
    loop = sum(d["seconds"] for d in index["datasets"])
    result = {"tokenizer": args.tokenizer, "wall_seconds": round(wall, 2), "tokens": tokens,
              "tokens_per_s_loop": round(tokens / loop), "tokens_per_s_wall": round(tokens / wall),
              "datasets": index["datasets"]}
    print(json.dumps({k: v for k, v in result.items() if k != "datasets"}, indent=2))
    for d in index["datasets"]:
        print(f"| {d['name']} | {d['documents']:,} | {d['tokens']:,} | {d['tokens_per_second']:,} |")
    print(f"| all (wall, incl. reading) | | {tokens:,} | {result['tokens_per_s_wall']:,} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
