"""Shared test helpers: tiny random HF models and tokenizers, torchrun launching."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
)

VARIANTS = {
    # name: (model_type, extra config)
    "llama-untied": ("llama", {"tie_word_embeddings": False}),
    "llama-tied": ("llama", {"tie_word_embeddings": True}),
    "llama31-rope": (
        "llama",
        {
            "tie_word_embeddings": False,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
    ),
    # megatron-core's fixed Llama 3.1 scaling (original context 8192): what Megatron-LM runs
    "llama31-mcore": (
        "llama",
        {
            "tie_word_embeddings": True,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
        },
    ),
    "mistral-headdim": (
        "mistral",
        {"head_dim": 32, "sliding_window": None, "tie_word_embeddings": False},
    ),
}


def make_tiny_model(path: Path, variant: str = "llama-untied", seed: int = 0) -> Path:
    """A random tiny Llama/Mistral saved with transformers (norm weights randomised too)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    kind, extra = VARIANTS[variant]
    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**TINY, **extra))
    else:
        model = MistralForCausalLM(MistralConfig(**TINY, **extra))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    return path


def hf_logits(model_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(tokens).logits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node nproc <args>`` on gloo; fail with its output."""
    env = clean_env(OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(free_port()),
        *args,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(
            f"torchrun failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
        )
    return res


DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    # tests never reach a model hub
    return dict(
        env,
        PYTHONPATH=str(ROOT),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        **extra,
    )


def minitron(
    args: list[str], timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process."""
    env = clean_env()
    res = subprocess.run(
        [sys.executable, "-m", "minitron", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"minitron {' '.join(args)} failed ({res.returncode}):\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
        )
    return res


def read_json(p: Path) -> dict:
    return json.loads(Path(p).read_text())


def make_tiny_tokenizer(path: Path, vocab_size: int = 300) -> Path:
    """A byte-level BPE trained on the built-in news corpus, saved as a HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from minitron.data.builtin import builtin_documents

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(builtin_documents("news"), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>")
    fast.save_pretrained(path)
    return path


def write_lm_eval_task(task_dir: Path, name: str, data: Path) -> Path:
    """An lm-eval multiple-choice task over a local generic jsonl (context, choices, gold)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{gold}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    return task_dir


SEARCH_SPACE = [
    "budget.fraction=0.6",
    "budget.tolerance=0.15",
    "space.hidden_size.step=16",
    "space.hidden_size.max_shrink=0.5",
    "space.ffn_hidden_size.step=32",
    "space.ffn_hidden_size.max_shrink=0.5",
    "space.num_attention_heads.max_shrink=0.5",
    "space.num_layers.step=1",
    "space.num_layers.max_shrink=0.5",
]


def search_args(teacher, calib, out, *extra) -> list[str]:
    """`minitron search` on a tiny model: 4 candidates, each distilled for 2 steps."""
    return [
        "search",
        "--model",
        str(teacher),
        "--out",
        str(out),
        "width_method=magnitude",
        f"data.paths=[{calib}]",
        "data.seq_length=16",
        "heldout_samples=4",
        "distill.schedule.steps=2",
        "distill.optim.lr=1e-3",
        "distill.optim.warmup_steps=1",
        "distill.schedule.global_batch_size=2",
        "distill.schedule.micro_batch_size=2",
        "distill.group_size=2",
        "progress=false",
        *SEARCH_SPACE,
        *extra,
    ]
