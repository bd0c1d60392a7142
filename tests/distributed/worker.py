"""Run by tests/distributed under torchrun: build, import, save, reload at one TP/PP layout.

    torchrun --nproc_per_node 4 tests/distributed/worker.py --tp 2 --pp 2 --tokens T.pt \
        --out R.pt --hf DIR [DIR ...] --ckpt-root DIR --load CKPT [CKPT ...]

Writes (global rank 0) {name: logits} for: every HF model loaded straight into the
layout ("mem:<name>"), imported to a checkpoint at the layout and reloaded ("ckpt:<name>"),
and every existing checkpoint loaded at the layout ("load:<name>").
"""

import argparse
from pathlib import Path

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--hf", nargs="*", default=[])
    p.add_argument("--ckpt-root")
    p.add_argument("--load", nargs="*", default=[])
    p.add_argument(
        "--megatron",
        nargs="*",
        default=[],
        help="Megatron-LM/Bridge/NeMo 2 directories: read in memory at this layout "
        '("meg:<name>") and imported at it, then reloaded ("megck:<name>")',
    )
    args = p.parse_args()

    from minitron.cli import quiet_megatron

    quiet_megatron()
    from minitron.checkpoint.hf_io import HFReader
    from minitron.checkpoint.load import load_model
    from minitron.config import loader, schema
    from minitron.eval.logits import full_logits
    from minitron.models.arch import load_arch
    from minitron.models.builder import build_model
    from minitron.models.weights import load_hf_weights
    from minitron.parallel import runtime
    from minitron.recipes import import_hf

    lay = runtime.init(args.tp, args.pp)
    tokens = torch.load(args.tokens)
    # the layout megatron-core was initialised with, as the process groups report it
    from megatron.core import parallel_state as ps

    results = {
        "layout": {
            "tp": ps.get_tensor_model_parallel_world_size(),
            "pp": ps.get_pipeline_model_parallel_world_size(),
            "dp": ps.get_data_parallel_world_size(),
        }
    }
    assert (lay.tp, lay.pp) == (results["layout"]["tp"], results["layout"]["pp"])
    for hf in args.hf:
        name = Path(hf).name
        arch = load_arch(hf)
        model = build_model(arch, init_weights=False)
        load_hf_weights(model, HFReader(hf), arch)
        results[f"mem:{name}"] = full_logits(model, tokens, arch.vocab_size)
        out = Path(args.ckpt_root) / name
        import_hf.main(
            loader.load(
                schema.ImportConfig,
                values={"hf": hf, "out": str(out), "tp": args.tp, "pp": args.pp},
            ),
            log=lambda s: None,
        )
        model, arch, _ = load_model(str(out))
        results[f"ckpt:{name}"] = full_logits(model, tokens, arch.vocab_size)
    for src in args.megatron:
        name = Path(src).name
        model, arch, _ = load_model(src)
        results[f"meg:{name}"] = full_logits(model, tokens, arch.vocab_size)
        out = Path(args.ckpt_root) / f"meg-{name}"
        import_hf.main(
            loader.load(
                schema.ImportConfig,
                values={"megatron": src, "out": str(out), "tp": args.tp, "pp": args.pp},
            ),
            log=lambda s: None,
        )
        model, arch, _ = load_model(str(out))
        results[f"megck:{name}"] = full_logits(model, tokens, arch.vocab_size)
    for ck in args.load:
        model, arch, info = load_model(ck)
        results[f"load:{Path(ck).name}"] = full_logits(model, tokens, arch.vocab_size)
        results[f"saved_layout:{Path(ck).name}"] = info["manifest"]["saved_layout"]
    if lay.is_main:
        torch.save(results, args.out)
    runtime.shutdown()


if __name__ == "__main__":
    main()
