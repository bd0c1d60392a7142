"""What the pickle gate and the finiteness check cost on a SmolLM2-135M checkpoint.

    python benchmarks/bench_gate.py [--model smollm2-135m] [--repeats 5] [--out results.json]

In one process, alternating: load the checkpoint (manifest check off, so only the gate
and megatron-core's read are timed) with the gate and with it switched off; save it with
the finiteness check and without. Reports medians and the ratios with / without, measured
side by side. The gate alone (every pickle of the checkpoint) is timed too.
"""

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()

    from minitron.checkpoint import gate, mcore
    from minitron.cli import quiet_megatron
    from minitron.config import loader, schema
    from minitron.parallel import runtime
    from minitron.recipes import import_hf

    quiet_megatron()
    runtime.init(1, 1)
    work = Path(tempfile.mkdtemp())
    ckpt = work / "ckpt"
    import_hf.main(
        loader.load(schema.ImportConfig, values={"hf": args.model, "out": str(ckpt)}),
        log=lambda s: None,
    )
    manifest = mcore.read_manifest(ckpt)
    size = sum(v["size"] for v in manifest["files"].values())
    times = {
        k: []
        for k in (
            "load_gated",
            "load_ungated",
            "gate_only",
            "save_checked",
            "save_unchecked",
            "finite_only",
        )
    }
    model = None
    for i in range(args.repeats):
        for gated in (True, False) if i % 2 == 0 else (False, True):
            off = mock.patch.object(gate, "check_dist_checkpoint", lambda path: None)
            with contextlib.nullcontext() if gated else off:
                t = time.perf_counter()
                model, _ = mcore.load_checkpoint(ckpt, verify="none")
                times["load_gated" if gated else "load_ungated"].append(time.perf_counter() - t)
        t = time.perf_counter()
        gate.check_dist_checkpoint(ckpt / "weights")
        times["gate_only"].append(time.perf_counter() - t)
        t = time.perf_counter()
        mcore.non_finite(model.named_parameters())
        times["finite_only"].append(time.perf_counter() - t)
        for checked in (True, False) if i % 2 == 0 else (False, True):
            out = work / f"save_{i}_{checked}"
            off = mock.patch.object(mcore, "check_finite", lambda *a: None)
            with contextlib.nullcontext() if checked else off:
                t = time.perf_counter()
                mcore.save_checkpoint(
                    model,
                    out,
                    arch=mcore.ModelArch.from_dict(manifest["arch"]),
                    hf_config={},
                    tokenizer_src=None,
                    dtype="float32",
                )
                times["save_checked" if checked else "save_unchecked"].append(
                    time.perf_counter() - t
                )
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    result = {
        "model": args.model,
        "checkpoint_mb": round(size / 2**20, 1),
        "repeats": args.repeats,
        "median_s": med,
        "all_s": times,
        "load_ratio": round(med["load_gated"] / med["load_ungated"], 3),
        "save_ratio": round(med["save_checked"] / med["save_unchecked"], 3),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "all_s"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
