"""Import time and peak memory of `minitron import` on SmolLM2-135M (fp32).

    python benchmarks/bench_import.py [--model smollm2-135m] [--repeats 3] [--out results.json]

Each repeat runs the real CLI in a fresh process and reads that process's peak
RSS from the kernel (ru_maxrss of the child). The one-time GGUF -> HF
conversion is done (and timed) first, outside the measured imports.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()

    from minitron.models.sources import resolve_model

    t = time.perf_counter()
    src = resolve_model(args.model)
    convert_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in Path(src).glob("*.safetensors"))
    runs = []
    for _ in range(args.repeats):
        out = Path(tempfile.mkdtemp()) / "ckpt"
        env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
        t = time.perf_counter()
        pid = subprocess.Popen(
            [sys.executable, "-m", "minitron", "import", "--hf", args.model, "--out", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(pid.pid, 0)
        wall = time.perf_counter() - t
        if status != 0:
            sys.exit(f"import failed with status {status}")
        runs.append({"seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)})
        shutil.rmtree(out.parent)
    best = min(runs, key=lambda r: r["seconds"])
    peak = max(r["peak_rss_mb"] for r in runs)
    result = {
        "model": args.model,
        "fp32_size_mb": round(size / 2**20, 1),
        "first_use_conversion_s": round(convert_s, 1),
        "runs": runs,
        "best_seconds": best["seconds"],
        "peak_rss_mb": peak,
        "peak_over_model_size": round(peak / (size / 2**20), 2),
    }
    print(json.dumps(result, indent=2))
    print(
        f"| import {args.model} (fp32, TP=1) | {best['seconds']:.1f} s (target < 60 s) | "
        f"peak RSS {peak:.0f} MB = {result['peak_over_model_size']:.2f}x the {size / 2**20:.0f} MB "
        f"fp32 model (target < 3x) |"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
