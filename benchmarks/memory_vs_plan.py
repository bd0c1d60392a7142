"""The memory plan against a measurement: SmolLM2 distillation on CPU, DP=1 and DP=2 with
the distributed optimizer.

    python benchmarks/memory_vs_plan.py [--work runs/bench] [--steps 3]

Each rank of a real `minitron distill` (teacher SmolLM2-135M, its magnitude-pruned width
student, fp32, sequence 256, micro-batch 2, global batch 4 x DP) records its resident
memory after start-up (imports, process groups: before any model is loaded) and its peak
resident memory (VmHWM) over the training steps (the peak is reset when the loop starts,
so the transient copies of loading a checkpoint do not count, and read before the
final checkpoint is written: checkpoint staging is not part of a step); the growth
between them is what training holds at its peak. glibc runs with a fixed mmap threshold
(``MALLOC_MMAP_THRESHOLD_=65536``): every allocation of 64 KiB or more is its own mapping,
returned when freed, so resident memory follows the live tensors (by default glibc keeps
freed heap, e.g. a checkpoint load's transient copies, and the same run then reads about
1.37x the plan instead of 1.09x). The plan (`minitron distill --dry-run` for the same settings) is the
estimate of that growth: weights, gradients, optimizer state, activations and loss
buffers. Writes benchmarks/results/memory_vs_plan.json with the ratio per rank.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def distill_args(teacher, student, data, out, steps, dp) -> list[str]:
    return [
        "distill",
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        f"data.paths=[{data}]",
        "data.seq_length=256",
        f"schedule.steps={steps}",
        f"schedule.global_batch_size={2 * 2 * dp}",
        "schedule.micro_batch_size=2",
        "schedule.save_every=1000",
        "progress=false",
        "tensorboard=false",
        "use_distributed_optimizer=true",
        "loss.chunk_size=256",
        "validation.loss={name: v, data: {paths: [" + str(data) + "], seq_length: 256}, "
        "num_samples: 2}",
    ]


def worker(args_json: str, out: str) -> None:
    """One rank of the measured run (under torchrun, or alone for DP=1)."""
    baseline = None
    from minitron import cli
    from minitron.parallel import runtime

    cli.quiet_megatron()
    argv = json.loads(args_json)
    name, cfg = cli.parse(argv)
    runtime.init(cfg.tp, cfg.pp)
    import minitron.recipes.distill as recipe  # noqa: F401  (imports before the baseline)
    from minitron.train import loop, state

    baseline = rss_kb("VmRSS")
    peaks = []
    logger_init, save = loop.MetricsLogger.__init__, state.save

    def start(self, *a, **k):  # the loop is about to run its first step
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        logger_init(self, *a, **k)

    def before_save(*a, **k):
        peaks.append(rss_kb("VmHWM"))
        return save(*a, **k)

    loop.MetricsLogger.__init__, loop.state.save = start, before_save
    recipe.main(cfg, log=lambda s: None)
    peak = max(peaks)
    lay = runtime.layout()
    Path(f"{out}.rank{lay.rank}").write_text(
        json.dumps(
            {
                "rank": lay.rank,
                "baseline_kb": baseline,
                "peak_kb": peak,
                "growth_bytes": (peak - baseline) * 1024,
            }
        )
    )
    runtime.shutdown()


def plan_bytes(args: list[str], dp: int) -> dict:
    """The plan `--dry-run` prints for ``args`` at data-parallel size ``dp``."""
    from minitron import cli
    from minitron.recipes import distill

    _, cfg = cli.parse(args + ["--dry-run", f"dp={dp}"])
    return distill.main(cfg, log=lambda s: None)["plan"]


def measure(teacher, student, data, work: Path, steps: int, dp: int) -> dict:
    import shutil

    run = work / f"memory_run_dp{dp}"
    shutil.rmtree(run, ignore_errors=True)
    args = distill_args(teacher, student, data, run, steps, dp)
    out = work / f"memory_dp{dp}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1" if dp > 1 else "2", MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--worker", json.dumps(args), "--tmp", str(out)]
    if dp > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(dp),
            "--master_port",
            "29541",
            *cmd[1:],
        ]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(dp)]
    plan = plan_bytes(args, dp)
    total = plan["total_bytes"]
    return {
        "dp": dp,
        "plan_total_bytes": total,
        "plan_parts_gb": plan["parts_gb"],
        "ranks": [dict(r, ratio_measured_over_plan=r["growth_bytes"] / total) for r in ranks],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/memory_vs_plan.json")
    p.add_argument("--worker")
    p.add_argument("--tmp")
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.tmp)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_engine import models

    work = Path(args.work)
    teacher, student, data = models(work)
    result = [measure(teacher, student, data, work, args.steps, dp) for dp in (1, 2)]
    Path(args.out).write_text(json.dumps(result, indent=2))
    for r in result:
        print(
            f"dp={r['dp']}: plan {r['plan_total_bytes'] / 1e9:.3f} GB; measured growth per rank "
            + ", ".join(
                f"{x['growth_bytes'] / 1e9:.3f} GB ({x['ratio_measured_over_plan']:.2f}x)"
                for x in r["ranks"]
            )
        )


if __name__ == "__main__":
    main()
