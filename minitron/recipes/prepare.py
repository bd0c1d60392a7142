"""``minitron data prepare``: tokenize corpora into megatron-core indexed datasets.

    minitron data prepare --tokenizer smollm2-135m --out data/builtin \
        inputs=[builtin:wiki,builtin:news,builtin:shakespeare] eod_token='<|endoftext|>'
"""

from __future__ import annotations

from minitron.config.schema import PrepareConfig
from minitron.data.prepare import prepare


def main(cfg: PrepareConfig, log=print) -> dict:
    return prepare(cfg, log)
