"""Tokenization throughput of `minitron data prepare` on the built-in corpora.

    python benchmarks/bench_tokenize.py [--tokenizer smollm2-135m] [--out results.json]
    python benchmarks/bench_tokenize.py --workers 1,2 --repeat 4 \
        --out benchmarks/results/tokenize_workers.json

Reports, per corpus, the tokenize-and-write loop (tokens/s from prepare's own
stats) and the whole command's wall time including reading the corpora.

``--workers 1,2`` instead prepares one jsonl (the three built-in corpora, repeated
``--repeat`` times) once per worker count, each into a fresh directory, and reports
tokens/s side by side, the parallel efficiency against workers=1 and its
extrapolation to a 64-core node. The Rust tokenizer's own thread pool is switched
off (TOKENIZERS_PARALLELISM=false) so that workers=1 is one core.
"""

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path


def builtin_corpora(tokenizer: str) -> dict:
    from minitron.config import loader, schema
    from minitron.data.prepare import prepare

    out = Path(tempfile.mkdtemp())
    cfg = loader.load(
        schema.PrepareConfig,
        values={
            "inputs": ["builtin:wiki", "builtin:news", "builtin:shakespeare"],
            "tokenizer": tokenizer,
            "out": str(out),
            "eod_token": "<|endoftext|>",
        },
    )
    t = time.perf_counter()
    index = prepare(cfg, log=lambda s: None)
    wall = time.perf_counter() - t
    tokens = sum(d["tokens"] for d in index["datasets"])
    loop = sum(d["seconds"] for d in index["datasets"])
    result = {
        "tokenizer": tokenizer,
        "wall_seconds": round(wall, 2),
        "tokens": tokens,
        "tokens_per_s_loop": round(tokens / loop),
        "tokens_per_s_wall": round(tokens / wall),
        "datasets": index["datasets"],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "datasets"}, indent=2))
    for d in index["datasets"]:
        print(
            f"| {d['name']} | {d['documents']:,} | {d['tokens']:,} | {d['tokens_per_second']:,} |"
        )
    print(f"| all (wall, incl. reading) | | {tokens:,} | {result['tokens_per_s_wall']:,} |")
    return result


def workers_side_by_side(tokenizer: str, counts: list[int], repeat: int) -> dict:
    from minitron.config import loader, schema
    from minitron.data.builtin import CORPORA, builtin_documents
    from minitron.data.prepare import prepare

    root = Path(tempfile.mkdtemp())
    corpus = root / "corpus.jsonl"
    docs = [d for name in CORPORA for d in builtin_documents(name)]
    with corpus.open("w") as f:
        for _ in range(repeat):
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
    runs, digests = [], set()
    for n in counts:
        cfg = loader.load(
            schema.PrepareConfig,
            values={
                "inputs": [str(corpus)],
                "tokenizer": tokenizer,
                "out": str(root / f"w{n}"),
                "eod_token": "<|endoftext|>",
                "workers": n,
            },
        )
        t = time.perf_counter()
        d = prepare(cfg, log=lambda s: None)["datasets"][0]
        wall = time.perf_counter() - t
        digests.add(
            tuple(
                hashlib.sha256((root / f"w{n}" / f"corpus{ext}").read_bytes()).hexdigest()
                for ext in (".bin", ".idx")
            )
        )
        runs.append(
            {
                "workers": n,
                "tokens": d["tokens"],
                "loop_seconds": d["seconds"],
                "tokens_per_s_loop": d["tokens_per_second"],
                "wall_seconds": round(wall, 2),
                "tokens_per_s_wall": round(d["tokens"] / wall),
            }
        )
    base = runs[0]["tokens_per_s_loop"] / runs[0]["workers"]
    for r in runs:
        r["efficiency"] = round(r["tokens_per_s_loop"] / (base * r["workers"]), 3)
    best = runs[-1]
    node = base * 64 * best["efficiency"]
    result = {
        "tokenizer": tokenizer,
        "corpus": f"built-in wiki+news+shakespeare x{repeat} (jsonl)",
        "corpus_mb": round(corpus.stat().st_size / 2**20, 1),
        "documents": len(docs) * repeat,
        "cores": len(os.sched_getaffinity(0)),
        "identical_bin_idx": len(digests) == 1,
        "runs": runs,
        "extrapolation_64_cores": {
            "note": "extrapolation, not a measurement: tokens/s of one worker x 64 x the "
            "parallel efficiency at the largest worker count measured; assumes the "
            "main process (reading, writing) keeps up with 64 workers",
            "tokens_per_s": round(node),
            "hours_for_94B_tokens": round(94e9 / node / 3600, 1),
        },
    }
    print(json.dumps(result, indent=2))
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", default="smollm2-135m")
    p.add_argument("--out")
    p.add_argument("--workers", help="comma-separated worker counts to compare, e.g. 1,2")
    p.add_argument("--repeat", type=int, default=4, help="copies of the corpora (--workers)")
    args = p.parse_args()
    if args.workers:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # workers=1 is then one core
        counts = [int(n) for n in args.workers.split(",")]
        result = workers_side_by_side(args.tokenizer, counts, args.repeat)
    else:
        result = builtin_corpora(args.tokenizer)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
