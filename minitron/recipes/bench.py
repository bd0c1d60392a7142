"""``minitron bench``: prefill and decode throughput of several models side by side.

    minitron bench --config examples/smollm2/bench.yaml

Every (model, backend) runs in its own process with the same prompts and lengths, once
per round (``repeats`` rounds), the models' order rotating from round to round so that
machine noise does not fall on one model only; figures are medians over the rounds, and
one whose rounds spread by more than 20% is marked unstable
(:mod:`minitron.bench.summary`). The result is bench.json (tokens/s, ms per decoded token,
peak memory, spreads, speed-ups over the baseline) and bench.png (the speed-up chart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from minitron.bench import summary
from minitron.bench.chart import speedup_chart
from minitron.checkpoint.load import is_checkpoint
from minitron.choices import BENCH_BACKENDS, bench_backend_available
from minitron.config.schema import BenchConfig, ExportConfig
from minitron.errors import ConfigError, MinitronError


def hf_dir(path: str, out: Path, name: str, log) -> str:
    """A HF directory for ``path`` (minitron checkpoints are exported once)."""
    if not is_checkpoint(path):
        return path
    target = out / "hf" / name
    if not (target / "config.json").is_file():
        from minitron.recipes import export

        export.main(ExportConfig(ckpt=path, out=str(target), overwrite=True), log)
    return str(target)


def measure(spec: dict) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    res = subprocess.run(
        [sys.executable, "-m", "minitron.bench.worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    line = next(
        (ln for ln in res.stdout.splitlines() if ln.startswith("MINITRON_BENCH_RESULT ")), None
    )
    if res.returncode != 0 or line is None:
        raise MinitronError(
            f"benchmark of {spec['path']} on {spec['backend']} failed:\n{res.stderr[-2000:]}"
        )
    return json.loads(line.split(" ", 1)[1])


def main(cfg: BenchConfig, log=print) -> dict:
    import torch

    for i, m in enumerate(cfg.models):  # every model now, not after the first ones were measured
        if not Path(m.path).expanduser().is_dir():
            raise ConfigError(
                f"models[{i}].path",
                f"{m.path} is not a directory; give a HF model directory or a minitron checkpoint",
            )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    dtype = ("bfloat16" if device == "cuda" else "float32") if cfg.dtype == "auto" else cfg.dtype
    backends = []
    for b in cfg.backends:
        for name in BENCH_BACKENDS if b == "auto" else (b,):
            if bench_backend_available(name) and name not in backends:
                backends.append(name)
            elif b == "auto" and not bench_backend_available(name):
                log(f"[bench] skipping {name}: not installed")
    paths = {m.name: hf_dir(m.path, out, m.name, log) for m in cfg.models}
    rounds: dict = {}
    for r in range(cfg.repeats):
        for m in summary.round_order(list(cfg.models), r):
            for backend in backends:
                log(
                    f"[bench] round {r + 1}/{cfg.repeats}: {m.name} on {backend} ({device}, "
                    f"{dtype})"
                )
                rounds.setdefault(m.name, {}).setdefault(backend, []).append(
                    measure(
                        {
                            "backend": backend,
                            "path": paths[m.name],
                            "device": device,
                            "dtype": dtype,
                            "batches": list(cfg.batch_sizes),
                            "prompt_length": cfg.prompt_length,
                            "decode_tokens": cfg.decode_tokens,
                            "repeats": 1,
                            "threads": cfg.threads,
                        }
                    )
                )
    results = {
        m.name: {b: summary.aggregate(rounds[m.name][b]) for b in rounds[m.name]}
        for m in cfg.models
    }
    baseline = cfg.baseline or cfg.models[0].name
    speedups = summary.speedups(results, baseline)
    report = {
        "device": device,
        "dtype": dtype,
        "threads": cfg.threads or torch.get_num_threads(),
        "prompt_length": cfg.prompt_length,
        "decode_tokens": cfg.decode_tokens,
        "rounds": cfg.repeats,
        "unstable_spread": summary.UNSTABLE_SPREAD,
        "baseline": baseline,
        "results": results,
        "speedups": speedups,
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    speedup_chart(
        report,
        out / "bench.png",
        f"{device} {dtype}, prompt {cfg.prompt_length}, decode {cfg.decode_tokens}",
    )
    log(
        f"{'model':<22}{'backend':<14}{'batch':>6}{'prefill tok/s':>15}{'decode tok/s':>14}"
        f"{'ms/token':>10}{'prefill x':>11}{'decode x':>10}"
    )
    for s in speedups:
        v = results[s["model"]][s["backend"]]["results"][str(s["batch"])]
        flags = [m for m in summary.METRICS if s[f"{m}_unstable"]]
        log(
            f"{s['model']:<22}{s['backend']:<14}{s['batch']:>6}{v['prefill_tokens_per_s']:>15.1f}"
            f"{v['decode_tokens_per_s']:>14.1f}{v['ms_per_decoded_token']:>10.1f}"
            f"{s['prefill']:>11.2f}{s['decode']:>10.2f}"
            + (f"  unstable ({', '.join(flags)}: rounds spread > 20%)" if flags else "")
        )
    log(f"[bench] wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report
