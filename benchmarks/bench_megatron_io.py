"""Import and export through the Megatron layout vs through Hugging Face, side by side.

    python benchmarks/bench_megatron_io.py [--model smollm2-135m] [--repeats 3] \
        [--out benchmarks/results/megatron_io.json]

Four real CLI commands, each in a fresh process, interleaved in every repeat so machine
noise falls on all of them alike:

    import --hf MODEL                      -> ckpt          (HF import)
    export --ckpt ckpt --format hf         -> hf/           (HF export)
    export --ckpt ckpt --format megatron   -> megatron/     (Megatron-LM / Bridge export)
    import --megatron megatron/            -> ckpt2         (Megatron import)

Reports each one's best wall time and peak RSS (``ru_maxrss`` of the child) and the
Megatron/HF ratios; checks the round trip (ckpt2 holds the same tensors as ckpt). This
process imports neither torch nor transformers: Linux starts a forked child's peak RSS at
its parent's current RSS, so a heavy parent would set a floor under every figure.
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

STEPS = {
    "import_hf": lambda w, m: ["import", "--hf", m, "--out", str(w / "ckpt")],
    "export_hf": lambda w, m: [
        "export",
        "--ckpt",
        str(w / "ckpt"),
        "--format",
        "hf",
        "--out",
        str(w / "hf"),
    ],
    "export_megatron": lambda w, m: [
        "export",
        "--ckpt",
        str(w / "ckpt"),
        "--format",
        "megatron",
        "--out",
        str(w / "megatron"),
    ],
    "import_megatron": lambda w, m: [
        "import",
        "--megatron",
        str(w / "megatron"),
        "--out",
        str(w / "ckpt2"),
    ],
}


def timed(args: list) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "minitron", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"minitron {' '.join(args)} failed: {p.stderr.read().decode()[-2000:]}")
    return {"seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


SAME = """import sys
from safetensors.torch import load_file
x, y = (load_file(d + "/model.safetensors") for d in sys.argv[1:])
sys.exit(0 if sorted(x) == sorted(y) and all(bool((x[k] == y[k]).all()) for k in x) else 1)
"""


def same_tensors(a: Path, b: Path) -> bool:
    return subprocess.run([sys.executable, "-c", SAME, str(a), str(b)]).returncode == 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()

    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from minitron.models.sources import "
            "resolve_model; resolve_model(sys.argv[1])",
            args.model,
        ],
        check=True,
    )
    # (the one-time GGUF conversion, outside the timings and outside this process)
    runs = {k: [] for k in STEPS}
    exact = None
    for _ in range(args.repeats):
        work = Path(tempfile.mkdtemp())
        for name, argv in STEPS.items():
            runs[name].append(timed(argv(work, args.model)))
        if exact is None:  # the round trip, checked through two HF exports
            timed(["export", "--ckpt", str(work / "ckpt2"), "--out", str(work / "hf2")])
            exact = same_tensors(work / "hf", work / "hf2")
        shutil.rmtree(work)
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    result = {
        "model": args.model,
        "repeats": args.repeats,
        "runs": runs,
        "best_seconds": best,
        "peak_rss_mb": peak,
        "round_trip_bit_exact": exact,
        "import_time_ratio_megatron_over_hf": round(best["import_megatron"] / best["import_hf"], 2),
        "import_memory_ratio_megatron_over_hf": round(
            peak["import_megatron"] / peak["import_hf"], 2
        ),
        "export_time_ratio_megatron_over_hf": round(best["export_megatron"] / best["export_hf"], 2),
        "export_memory_ratio_megatron_over_hf": round(
            peak["export_megatron"] / peak["export_hf"], 2
        ),
    }
    print(json.dumps(result, indent=2))
    for op in ("import", "export"):
        m, h = f"{op}_megatron", f"{op}_hf"
        print(
            f"| {op} | {best[h]:.1f} s, {peak[h]:.0f} MB | {best[m]:.1f} s, {peak[m]:.0f} MB | "
            f"{result[f'{op}_time_ratio_megatron_over_hf']:.2f} | "
            f"{result[f'{op}_memory_ratio_megatron_over_hf']:.2f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
