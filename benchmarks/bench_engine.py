"""megatron-core's training engine on this machine, measured side by side.

    python benchmarks/bench_engine.py [--work runs/bench] [--repeats 3]

On SmolLM2-135M (teacher) and a magnitude-pruned width student (hidden 384, MLP 1024,
6 heads), all on the built-in corpora, sequence 256:
  step   `minitron distill` step time, the engine (this checkout) against the hand-written
         loop it replaced (commit 8f854a6, checked out into a git worktree), same model and
         batches (6 steps, global batch 4 in micro-batches of 2), runs alternating; median
         step time of steps 2-6 from metrics.csv.
  optim  optimizer-state bytes per rank at DP=2 with the distributed optimizer and without
         (Adam moments + fp32 main params; fp32 and bf16 parameters).
  pp     PP=2: one schedule call with 8 micro-batches (1F1B) against 8 one-micro-batch calls,
         forward + backward of the LM loss, alternating; median seconds per step.
Writes benchmarks/results/engine.json.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OLD = "8f854a6"
ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, package=None):
    """The CLI in a fresh process; ``package``: a checkout whose minitron is imported instead
    of the installed (editable) one."""
    print("$ minitron", " ".join(args), flush=True)
    if package is None:
        cmd = [sys.executable, "-m", "minitron", *args]
    else:
        cmd = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(package)!r}); "
            "from minitron.cli import main; sys.exit(main(sys.argv[1:]))",
            *args,
        ]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def models(work: Path) -> tuple[Path, Path, Path]:
    teacher, student, data = work / "teacher", work / "width_magnitude", work / "data"
    if not (teacher / "manifest.json").exists():
        cli("import", "--hf", "smollm2-135m", "--out", str(teacher), "--overwrite")
    if not (data / "datasets.json").exists():
        cli(
            "data",
            "prepare",
            "--tokenizer",
            "smollm2-135m",
            "--out",
            str(data),
            "inputs=[builtin:wiki,builtin:news,builtin:shakespeare]",
            "eod_token=<|endoftext|>",
        )
    if not (student / "manifest.json").exists():
        cli(
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(student),
            "--overwrite",
            "width_method=magnitude",
            "target.hidden_size=384",
            "target.ffn_hidden_size=1024",
            "target.num_attention_heads=6",
        )
    return teacher, student, data


def step_times(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # tokens_per_s is measured over the step (forward, backward, reduction, optimizer)
    return [4 * 256 / float(r["tokens_per_s"]) for r in rows[1:]]


def bench_step(work: Path, repeats: int) -> dict:
    teacher, student, data = models(work)
    old = work / "old_checkout"
    if not old.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(old), OLD], cwd=ROOT, check=True)
    args = [
        "distill",
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        f"data.paths=[{data}]",
        "data.seq_length=256",
        "schedule.steps=6",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "schedule.save_every=100",
        "progress=false",
        "tensorboard=false",
        "validation.loss={name: v, data: {paths: [" + str(data) + "], seq_length: 256}, "
        "num_samples: 2}",
    ]
    times = {"engine": [], "old_loop": []}
    for r in range(repeats):
        for name in ("old_loop", "engine") if r % 2 == 0 else ("engine", "old_loop"):
            run = work / f"engine_bench_{name}"
            subprocess.run(["rm", "-rf", str(run)], check=True)
            env = dict(os.environ, OMP_NUM_THREADS="2")
            cli(*args, "--out", str(run), env=env, package=old if name == "old_loop" else None)
            times[name] += step_times(run)
            # which loop ran: the old one pickles per-rank optimizer files
            ck = next((run / "checkpoints").glob("step_*"))
            assert (ck / "optim" / "rank_0.pt").exists() == (name == "old_loop"), name
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "step_s": times,
        "median_step_s": med,
        "engine_over_old": med["engine"] / med["old_loop"],
    }


def torchrun(*args) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            __file__,
            *args,
        ],
        check=True,
        env=env,
    )


def worker_optim(student: str, out: str) -> None:
    """Under torchrun (2 ranks, DP=2): optimizer-state bytes per rank, with and without the
    distributed optimizer, after one step."""
    import torch

    from minitron.checkpoint.load import load_model
    from minitron.config.schema import DataConfig
    from minitron.config.train import OptimConfig
    from minitron.data.datasets import samples
    from minitron.models.builder import DTYPES
    from minitron.parallel import runtime
    from minitron.parallel.engine import Engine, EngineOptions
    from minitron.train.steps import lm_step

    lay = runtime.init(1, 1)
    result = {}
    for dtype in ("float32", "bfloat16"):
        for distributed in (False, True):
            model, arch, _ = load_model(student, dtype)
            eng = Engine(model, OptimConfig(), EngineOptions(DTYPES[dtype], distributed))
            mb = samples(
                DataConfig(paths=[str(Path(out).parent / "data")], seq_length=64),
                "train",
                2,
                arch.vocab_size,
            )
            eng.zero_grad()
            per = lm_step(eng.ddp, [mb])
            eng.finalize(int(sum(int(m["count"]) for m in per)))
            eng.step()
            inner = eng.optimizer.chained_optimizers[0]
            moments = sum(
                t.numel() * t.element_size()
                for st in inner.optimizer.state.values()
                for k, t in st.items()
                if torch.is_tensor(t) and k != "step"
            )
            # bf16: the inner optimizer steps fp32 main params (whole, or this rank's shard);
            # fp32 parameters are stepped in place (shard views when distributed): no copy
            main = (
                0
                if dtype == "float32"
                else sum(
                    p.numel() * p.element_size()
                    for g in inner.optimizer.param_groups
                    for p in g["params"]
                )
            )
            sizes = torch.tensor([moments, main], dtype=torch.float64)
            gathered = [torch.zeros_like(sizes) for _ in range(lay.world_size)]
            torch.distributed.all_gather(gathered, sizes)
            result[f"{dtype}_{'distributed' if distributed else 'replicated'}"] = [
                {"adam_moments_bytes": int(g[0]), "fp32_main_params_bytes": int(g[1])}
                for g in gathered
            ]
            del eng, model
    if lay.is_main:
        Path(out).write_text(json.dumps(result, indent=2))
    runtime.shutdown()


def worker_pp(student: str, data: str, out: str, repeats: int) -> None:
    """Under torchrun (2 ranks, PP=2): 8 micro-batches per step in one schedule call against
    8 calls of one micro-batch each."""
    from minitron.checkpoint.load import load_model
    from minitron.config.schema import DataConfig
    from minitron.config.train import OptimConfig
    from minitron.data.datasets import samples
    from minitron.parallel import runtime
    from minitron.parallel.engine import Engine, EngineOptions
    from minitron.train.loop import split_micro
    from minitron.train.steps import lm_step

    lay = runtime.init(1, 2)
    model, arch, _ = load_model(student)
    eng = Engine(model, OptimConfig(), EngineOptions())
    batch = samples(DataConfig(paths=[data], seq_length=256), "train", 8, arch.vocab_size)
    mbs = split_micro(batch, 1)

    def one_call():
        lm_step(eng.ddp, mbs)

    def separate_calls():
        for mb in mbs:
            lm_step(eng.ddp, [mb])

    times = {"one_call_8_micro": [], "eight_calls": []}
    one_call()  # warm-up
    for r in range(repeats):
        for name, fn in (
            (("one_call_8_micro", one_call), ("eight_calls", separate_calls))
            if r % 2 == 0
            else (("eight_calls", separate_calls), ("one_call_8_micro", one_call))
        ):
            eng.zero_grad()
            runtime.barrier()
            t = time.perf_counter()
            fn()
            runtime.barrier()
            times[name].append(time.perf_counter() - t)
    if lay.is_main:
        med = {k: statistics.median(v) for k, v in times.items()}
        Path(out).write_text(
            json.dumps(
                {
                    "step_s": times,
                    "median_step_s": med,
                    "speedup": med["eight_calls"] / med["one_call_8_micro"],
                },
                indent=2,
            )
        )
    runtime.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--parts", default="step,optim,pp")
    p.add_argument("--out", default="benchmarks/results/engine.json")
    p.add_argument("--worker", choices=["optim", "pp"])
    p.add_argument("--student")
    p.add_argument("--data")
    p.add_argument("--tmp")
    args = p.parse_args()
    if args.worker:
        from minitron.cli import quiet_megatron

        quiet_megatron()
        if args.worker == "optim":
            return worker_optim(args.student, args.tmp)
        return worker_pp(args.student, args.data, args.tmp, args.repeats)
    work = Path(args.work)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    _, student, data = models(work)
    parts = args.parts.split(",")
    if "step" in parts:
        result["step"] = bench_step(work, args.repeats)
    if "optim" in parts:
        tmp = work / "engine_optim.json"
        torchrun("--worker", "optim", "--student", str(student), "--tmp", str(tmp))
        result["optim"] = json.loads(tmp.read_text())
    if "pp" in parts:
        tmp = work / "engine_pp.json"
        torchrun(
            "--worker",
            "pp",
            "--student",
            str(student),
            "--data",
            str(data),
            "--tmp",
            str(tmp),
            "--repeats",
            str(args.repeats),
        )
        result["pp"] = json.loads(tmp.read_text())
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v.get("median_step_s", v) for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
