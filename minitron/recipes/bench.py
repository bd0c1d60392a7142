"""``minitron bench``: prefill and decode throughput of several models side by side.

    minitron bench --config examples/smollm2/bench.yaml

Every (model, backend) runs in its own process with the same prompts and lengths;
the result is bench.json (tokens/s, ms per decoded token, peak memory, speed-ups
over the baseline) and bench.png (the speed-up bar chart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from minitron.bench.backends import BACKENDS, available
from minitron.bench.chart import speedup_chart
from minitron.config.schema import BenchConfig, ExportConfig
from minitron.errors import ConfigError, MinitronError
from minitron.models.load import is_checkpoint


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
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK",
                                                           "WORLD_SIZE", "LOCAL_RANK")}
    res = subprocess.run([sys.executable, "-m", "minitron.bench.worker", json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("MINITRON_BENCH_RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise MinitronError(f"benchmark of {spec['path']} on {spec['backend']} failed:\n"
                            f"{res.stderr[-2000:]}")
    return json.loads(line.split(" ", 1)[1])


def main(cfg: BenchConfig, log=print) -> dict:
    import torch

    for i, m in enumerate(cfg.models):  # every model now, not after the first ones were measured
        if not Path(m.path).expanduser().is_dir():
            raise ConfigError(f"models[{i}].path", f"{m.path} is not a directory; give a HF model "
                              "directory or a minitron checkpoint")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    dtype = ("bfloat16" if device == "cuda" else "float32") if cfg.dtype == "auto" else cfg.dtype
    backends = []
    for b in cfg.backends:
        for name in (BACKENDS if b == "auto" else (b,)):
            if available(name) and name not in backends:
                backends.append(name)
            elif b == "auto" and not available(name):
                log(f"[bench] skipping {name}: not installed")
    paths = {m.name: hf_dir(m.path, out, m.name, log) for m in cfg.models}
    results: dict = {}
    for m in cfg.models:
        for backend in backends:
            log(f"[bench] {m.name} on {backend} ({device}, {dtype})")
            results.setdefault(m.name, {})[backend] = measure({
                "backend": backend, "path": paths[m.name], "device": device, "dtype": dtype,
                "batches": list(cfg.batch_sizes), "prompt_length": cfg.prompt_length,
                "decode_tokens": cfg.decode_tokens, "repeats": cfg.repeats,
                "threads": cfg.threads})
    baseline = cfg.baseline or cfg.models[0].name
    speedups = []
    for name, per_backend in results.items():
        for backend, r in per_backend.items():
            base = results[baseline][backend]["results"]
            for batch, v in r["results"].items():
                speedups.append({"model": name, "backend": backend, "batch": int(batch),
                                 "prefill": v["prefill_tokens_per_s"] / base[batch]["prefill_tokens_per_s"],
                                 "decode": v["decode_tokens_per_s"] / base[batch]["decode_tokens_per_s"]})
    report = {"device": device, "dtype": dtype, "threads": cfg.threads or torch.get_num_threads(),
              "prompt_length": cfg.prompt_length, "decode_tokens": cfg.decode_tokens,
              "baseline": baseline, "results": results, "speedups": speedups}
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    speedup_chart(report, out / "bench.png",
                  f"{device} {dtype}, prompt {cfg.prompt_length}, decode {cfg.decode_tokens}")
    log(f"{'model':<22}{'backend':<14}{'batch':>6}{'prefill tok/s':>15}{'decode tok/s':>14}"
        f"{'ms/token':>10}{'prefill x':>11}{'decode x':>10}")
    for s in speedups:
        v = results[s["model"]][s["backend"]]["results"][str(s["batch"])]
        log(f"{s['model']:<22}{s['backend']:<14}{s['batch']:>6}{v['prefill_tokens_per_s']:>15.1f}"
            f"{v['decode_tokens_per_s']:>14.1f}{v['ms_per_decoded_token']:>10.1f}"
            f"{s['prefill']:>11.2f}{s['decode']:>10.2f}")
    log(f"[bench] wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report
