"""Cost of importance scoring: the hooks' overhead over a plain forward, and peak memory.

    python benchmarks/bench_score_overhead.py [--samples 32 --seq 512 --repeats 3]

Time: the same calibration micro-batches run through the same model with and
without the Collector's hooks, alternately (median of the repeats). Memory: peak
RSS of `minitron score` vs `minitron loss` over the same number of samples, each
in a fresh process (ru_maxrss of the child).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb(args) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "minitron", *args], env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(f"minitron {' '.join(args)} failed")
    return usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default="runs/bench/data")
    args = p.parse_args()

    from minitron.checkpoint.load import load_model
    from minitron.cli import quiet_megatron
    from minitron.config import loader, schema
    from minitron.data.datasets import microbatches, samples
    from minitron.parallel import runtime
    from minitron.parallel.schedule import pipeline_forward
    from minitron.prune.collect import Collector

    quiet_megatron()
    runtime.init(1, 1)
    model, arch, _ = load_model("smollm2-135m")
    model.eval()
    dc = loader.load(schema.DataConfig, values={"paths": [args.data], "seq_length": args.seq})
    mbs = microbatches(samples(dc, "train", args.samples, arch.vocab_size), 4)

    def run(hooks: bool) -> float:
        c = Collector(model) if hooks else None
        t = time.perf_counter()
        for mb in mbs:
            pipeline_forward(model, [mb], lambda o, b: None, with_labels=True)
        if c is not None:
            c.results()
            c.remove()
        return time.perf_counter() - t

    run(False)
    plain, hooked = [], []
    for _ in range(args.repeats):
        plain.append(run(False))
        hooked.append(run(True))
    a, b = statistics.median(plain), statistics.median(hooked)
    out = Path(tempfile.mkdtemp())
    common = [f"data.paths=[{args.data}]", f"data.seq_length={args.seq}"]
    score_mb = peak_rss_mb(
        [
            "score",
            "--model",
            "smollm2-135m",
            "--out",
            str(out / "s"),
            f"num_samples={args.samples}",
            "progress=false",
            *common,
        ]
    )
    loss_mb = peak_rss_mb(
        ["loss", "--model", "smollm2-135m", f"num_samples={args.samples}", "split=train", *common]
    )
    res = {
        "samples": args.samples,
        "seq": args.seq,
        "plain_s": round(a, 2),
        "hooked_s": round(b, 2),
        "overhead_pct": round(100 * (b - a) / a, 1),
        "score_peak_rss_mb": round(score_mb),
        "loss_peak_rss_mb": round(loss_mb),
    }
    print(json.dumps(res, indent=2))
    print(
        f"| scoring hooks, {args.samples} x {args.seq} tokens | plain {a:.1f} s | hooked {b:.1f} s "
        f"| {res['overhead_pct']:+.1f}% | peak RSS score {score_mb:.0f} MB vs loss {loss_mb:.0f} MB |"
    )


if __name__ == "__main__":
    main()
