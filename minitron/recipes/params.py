"""``minitron params``: exact total and non-embedding parameter counts.

minitron params --hf-config examples/llama-3.1-8b/config.json hidden_size=3072 ffn_hidden_size=9216
"""

from __future__ import annotations

import json

from minitron.config.schema import ParamsConfig
from minitron.models.arch import load_arch
from minitron.models.params import count_params, format_counts


def main(cfg: ParamsConfig, log=print) -> dict:
    arch = load_arch(cfg.hf_config, cfg.overrides())
    counts = count_params(arch)
    if cfg.json:
        log(json.dumps({"arch": arch.to_dict(), **counts}, indent=2))
    else:
        log(format_counts(arch, counts))
    return counts
