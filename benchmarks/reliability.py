"""Every fault probe of issue 12 against the real CLI: the command, what it printed, and
the time until it stopped (process start included).

    python benchmarks/reliability.py [--out benchmarks/results/reliability.json]

Runs on a tiny random Llama (4 layers, 64 wide) and a small prepared corpus, built here,
so it takes a few minutes on 2 CPU cores. Prints a markdown table for docs/benchmarks.md.
"""

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def cli(args, cwd=None):
    from helpers import clean_env

    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "minitron", *map(str, args)],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    err = [ln for ln in res.stderr.splitlines() if ln.startswith(("error:", "[rank"))]
    out = [ln for ln in res.stdout.splitlines() if ln.strip()]
    resumed = [
        ln for ln in res.stdout.splitlines() + res.stderr.splitlines() if "resumed from" in ln
    ]
    said = err[-1] if err else (resumed or out or [""])[-1]
    return res.returncode, said, time.perf_counter() - t


def reseal(ckpt):
    from minitron.checkpoint import atomic

    m = json.loads((ckpt / "manifest.json").read_text())
    m["files"] = atomic.checksums(ckpt, skip=("manifest.json",))
    (ckpt / "manifest.json").write_text(json.dumps(m))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    args = p.parse_args()
    from helpers import make_tiny_model, make_tiny_tokenizer

    w = Path(tempfile.mkdtemp())
    tok = make_tiny_tokenizer(w / "tok")
    hf = make_tiny_model(w / "hf")
    for f in tok.iterdir():
        shutil.copy2(f, hf / f.name)
    corpus = w / "c.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"Story {i}: the quick brown fox jumps over {i} lazy dogs."})
            for i in range(300)
        )
    )
    cli(["data", "prepare", "--input", corpus, "--tokenizer", tok, "--out", w / "data"])
    ck = w / "ck"
    cli(["import", "--hf", hf, "--out", ck])
    train = [
        f"data.paths=[{w / 'data'}]",
        "data.seq_length=16",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "optim.warmup_steps=2",
        "progress=false",
        "schedule.save_every=2",
    ]

    def distill(out, steps=4, *extra):
        return [
            "distill",
            "--student",
            ck,
            "--teacher",
            ck,
            "--out",
            out,
            f"schedule.steps={steps}",
            *train,
            *extra,
        ]

    rows = []

    def probe(name, args, cwd=None, expect_fail=True, setup=None):
        if setup:
            setup()
        rc, said, s = cli(args, cwd)
        ok = (rc != 0) == expect_fail
        rows.append(
            {
                "probe": name,
                "command": "minitron " + " ".join(str(a).replace(str(w), "$W") for a in args),
                "exit": rc,
                "result": said.replace(str(w), "$W")[:300],
                "seconds": round(s, 1),
                "as_expected": ok,
            }
        )
        print(f"{'ok ' if ok else 'BAD'} {name}: rc={rc} {s:.1f}s {said[:160]}", flush=True)

    # 1. pickles
    evil = w / "evil"
    shutil.copytree(ck, evil)
    meta = evil / "weights" / ".metadata"
    md = pickle.loads(meta.read_bytes())
    md.planner_data = {"x": Payload(w / "pwned")}
    meta.write_bytes(pickle.dumps(md))
    reseal(evil)
    probe(
        "crafted .metadata (os.system), manifest resealed",
        ["export", "--ckpt", evil, "--out", w / "e1"],
    )
    held_out = [f"data.paths=[{w / 'data'}]", "data.seq_length=16"]
    probe("... the same on `loss`", ["loss", "--model", evil, *held_out])
    assert not (w / "pwned").exists()
    # 2. non-finite
    probe(
        "optim.lr=1e6, clip off: a diverging run",
        distill(w / "lr", 6, "optim.lr=1e6", "optim.clip_grad=0", "max_skipped_steps=2"),
    )
    # 3. stale results
    cli(distill(w / "fin", 2))
    probe(
        "finished run rerun with optim.lr=5e-2 loss.kind=reverse_kl",
        distill(w / "fin", 2, "optim.lr=5e-2", "loss.kind=reverse_kl"),
    )
    edited = w / "e.jsonl"
    edited.write_text("\n".join(json.dumps({"text": f"first version {i}"}) for i in range(30)))
    cli(["data", "prepare", "--input", edited, "--tokenizer", tok, "--out", w / "d2"])
    edited.write_text(
        "\n".join(json.dumps({"text": f"an edited, longer line {i}"}) for i in range(30))
    )
    probe(
        "data prepare of an edited input (same path)",
        ["data", "prepare", "--input", edited, "--tokenizer", tok, "--out", w / "d2"],
        expect_fail=False,
    )
    probe(
        "second data prepare of another input into the same --out",
        ["data", "prepare", "--input", corpus, "--tokenizer", tok, "--out", w / "d2"],
        expect_fail=False,
    )
    names = [d["name"] for d in json.loads((w / "d2" / "datasets.json").read_text())["datasets"]]
    rows[-1]["result"] += f" (datasets.json: {names})"
    # 4. two writers
    first = subprocess.Popen(
        [sys.executable, "-m", "minitron", *map(str, distill(w / "two", 8))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = w / ".two.lock"
    while not (lock.is_file() and lock.read_text()):
        time.sleep(0.05)
    probe("a second distill into the same --out while the first runs", distill(w / "two", 8))
    first.wait()
    # 5. resume checks
    cli(distill(w / "r", 6))
    shutil.rmtree(w / "r" / "final")
    state = next((w / "r" / "checkpoints" / "step_000006" / "optim" / "student").glob("*.distcp"))
    b = bytearray(state.read_bytes())
    b[len(b) // 2] ^= 1
    state.write_bytes(bytes(b))
    probe("resume with a flipped byte in the newest step checkpoint", distill(w / "r", 6))
    (w / "r" / "checkpoints" / "step_000006" / "trainer.json").write_text('{"step": 6, "sa')
    probe("resume with a truncated trainer.json", distill(w / "r", 6))
    cli(distill("d", 4), cwd=w)
    for label, out, cwd in (
        ("./d", "./d", w),
        ("absolute path", w / "d", "/"),
        ("moved directory", "moved", w),
    ):
        if out == "moved":
            (w / "d").rename(w / "moved")
        run = w / ("moved" if out == "moved" else "d")
        shutil.rmtree(run / "final")
        shutil.rmtree(run / "checkpoints" / "step_000004")
        probe(
            f"resume a run started as `--out d` with {label}",
            distill(out, 4),
            cwd=cwd,
            expect_fail=False,
        )
    # 6. early config errors
    for name, extra in (
        ("correct.mode=bogus", ["correct.enabled=true", "correct.mode=bogus"]),
        ("data.inputs=[/missing.jsonl]", ["data.inputs=[/missing.jsonl]"]),
    ):
        for dry in ([], ["--dry-run"]):
            probe(
                f"minitron run {name} {' '.join(dry)}",
                ["run", "--workdir", w / f"run_{len(rows)}", *extra, *dry],
            )
    for bad in (
        "optim.beta1=2",
        "optim.eps=-1",
        "optim.clip_grad=-1",
        "optim.weight_decay=-1",
        "optim.lr=-1",
        "loss.kind=jsd loss.beta=5",
    ):
        probe(f"distill {bad}", distill(w / f"bad_{len(rows)}", 2, *bad.split()))
    prefs = w / "p.jsonl"
    prefs.write_text(json.dumps({"prompt": "Q?", "chosen": "yes", "rejected": ""}) + "\n")
    probe(
        'align: a preference row with "rejected": ""',
        ["align", "--model", ck, "--data", prefs, "--algorithm", "dpo", "--out", w / "al"],
    )
    (w / "evdir").mkdir()
    probe(
        "eval --out naming an existing directory",
        ["eval", "--model", ck, "--task", "winogrande", "--limit", "4", "--out", w / "evdir"],
    )
    probe(
        "export --out . --overwrite",
        ["export", "--ckpt", ck, "--out", ".", "--overwrite"],
        cwd=w / "evdir",
    )
    (w / "mine" / "keep").mkdir(parents=True)
    probe(
        "export --overwrite onto a directory that is not an export",
        ["export", "--ckpt", ck, "--out", w / "mine", "--overwrite"],
    )
    # already held before this issue
    trunc = w / "trunc"
    shutil.copytree(ck, trunc)
    f = next((trunc / "weights").glob("*.distcp"))
    f.write_bytes(f.read_bytes()[:-100])
    probe("truncated weights file", ["loss", "--model", trunc, *held_out])
    flip = w / "flip"
    shutil.copytree(ck, flip)
    f = next((flip / "weights").glob("*.distcp"))
    b = bytearray(f.read_bytes())
    b[len(b) // 3] ^= 1
    f.write_bytes(bytes(b))
    probe("flipped byte in a checkpoint", ["loss", "--model", flip, *held_out])
    (w / "bad.yaml").write_text("optim: [unclosed\n")
    probe("malformed YAML", ["distill", "--config", w / "bad.yaml"])
    (w / "bad.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    probe(
        "malformed jsonl",
        ["data", "prepare", "--input", w / "bad.jsonl", "--tokenizer", tok, "--out", w / "d3"],
    )
    killed = subprocess.Popen(
        [sys.executable, "-m", "minitron", *map(str, distill(w / "k", 10))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = w / "k" / "metrics.csv"
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 5):
        time.sleep(0.05)
    killed.kill()
    killed.wait()
    probe("rerun after kill -9 at step 5 of 10", distill(w / "k", 10), expect_fail=False)
    table = ["| probe | command | exit | result | s |", "|---|---|---|---|---|"]
    for r in rows:
        cmd = r["command"] if len(r["command"]) < 120 else r["command"][:117] + "..."
        table.append(f"| {r['probe']} | `{cmd}` | {r['exit']} | {r['result']} | {r['seconds']} |")
    print("\n".join(table))
    bad = [r["probe"] for r in rows if not r["as_expected"]]
    print(f"{len(rows) - len(bad)}/{len(rows)} as expected" + (f"; not: {bad}" if bad else ""))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "not_as_expected": bad}, indent=2))
    shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
