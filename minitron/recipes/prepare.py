"""``minitron data prepare``: tokenize corpora into megatron-core indexed datasets.

    minitron data prepare --tokenizer smollm2-135m --out data/builtin \
        inputs=[builtin:wiki,builtin:news,builtin:shakespeare] eod_token='<|endoftext|>'
    torchrun --nproc_per_node 4 -m minitron data prepare --tokenizer T --out D \
        inputs=[a.jsonl,b.jsonl,c.jsonl,d.jsonl] workers=8

Under torchrun each rank prepares its share of the inputs (rank r: inputs r, r+W, ...)
with ``workers`` tokenizer processes; rank 0 writes the one datasets.json.
"""

from __future__ import annotations

import os

from minitron.config.schema import PrepareConfig
from minitron.data.prepare import prepare


def main(cfg: PrepareConfig, log=print) -> dict:
    import torch.distributed as dist

    from minitron.parallel import runtime

    # Already initialised: a caller (the pipeline's on_main) runs this on one rank only.
    if runtime.world_size_from_env() == 1 or dist.is_initialized():
        return prepare(cfg, log)
    lay = runtime.init(1, 1)
    return prepare(
        cfg,
        log,
        rank=lay.rank,
        world=lay.world_size,
        ranks_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", lay.world_size)),
    )
