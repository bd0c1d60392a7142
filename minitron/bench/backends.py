"""Throughput of one model on one inference backend: prefill and decode tokens/s, latency
per decoded token, peak memory. Run in a child process per (model, backend) so memory
peaks are the model's own (``python -m minitron.bench.worker``).

- ``transformers``: prefill = one forward of ``[batch, prompt_length]``; decode = ``decode_tokens``
  single-token forwards with the KV cache (greedy), timed after the prefill.
- ``vllm`` and ``trtllm`` (TensorRT-LLM's LLM API with its PyTorch backend, on the HF
  export; TensorRT-LLM >= 1.0): prefill = a generation of one token,
  decode = (a generation of ``decode_tokens`` tokens - prefill) / (tokens - 1), with EOS
  ignored. They are imported only when asked for; neither installs on a CPU machine.
"""

from __future__ import annotations

import resource
import statistics
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prompt(vocab: int, batch: int, length: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, min(vocab, 30000), (batch, length), generator=g)


def transformers_run(
    path: str,
    device: str,
    dtype: str,
    batches: list[int],
    prompt_length: int,
    decode_tokens: int,
    repeats: int,
) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    # transformers wraps PreTrainedModel.to with functools.wraps, whose stub loses the bound self
    model = (
        AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()  # type: ignore[arg-type]
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = {}
    for b in batches:
        ids = _prompt(model.config.vocab_size, b, prompt_length).to(device)
        pre, dec = [], []
        with torch.no_grad():
            for r in range(repeats + 1):  # the first round warms up
                sync()
                t = time.perf_counter()
                res = model(ids, use_cache=True)
                sync()
                t_pre = time.perf_counter() - t
                past, nxt = res.past_key_values, res.logits[:, -1:].argmax(-1)
                t = time.perf_counter()
                for _ in range(decode_tokens):
                    res = model(nxt, past_key_values=past, use_cache=True)
                    past, nxt = res.past_key_values, res.logits[:, -1:].argmax(-1)
                sync()
                t_dec = time.perf_counter() - t
                if r:
                    pre.append(t_pre)
                    dec.append(t_dec)
        tp, td = statistics.median(pre), statistics.median(dec)
        out[b] = {
            "prefill_tokens_per_s": b * prompt_length / tp,
            "decode_tokens_per_s": b * decode_tokens / td,
            "ms_per_decoded_token": 1000 * td / decode_tokens,
        }
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else _rss_mb()
    return {
        "results": out,
        "peak_memory_mb": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _generate_timing(generate, batches, prompt_length, decode_tokens, repeats, vocab) -> dict:
    out = {}
    for b in batches:
        prompts = _prompt(vocab, b, prompt_length).tolist()
        generate(prompts, 1)  # warm-up
        one = statistics.median(_timed(lambda p=prompts: generate(p, 1)) for _ in range(repeats))
        many = statistics.median(
            _timed(lambda p=prompts: generate(p, decode_tokens)) for _ in range(repeats)
        )
        per_token = max(many - one, 1e-9) / max(decode_tokens - 1, 1)
        out[b] = {
            "prefill_tokens_per_s": b * prompt_length / one,
            "decode_tokens_per_s": b / per_token,
            "ms_per_decoded_token": 1000 * per_token,
        }
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def vllm_run(path, device, dtype, batches, prompt_length, decode_tokens, repeats) -> dict:
    import torch
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, dtype=dtype, enforce_eager=False)

    def generate(prompts, n):
        params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0)
        llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)

    vocab = llm.llm_engine.model_config.get_vocab_size()
    res = _generate_timing(generate, batches, prompt_length, decode_tokens, repeats, vocab)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else _rss_mb()
    return {"results": res, "peak_memory_mb": peak}


def trtllm_run(path, device, dtype, batches, prompt_length, decode_tokens, repeats) -> dict:
    import torch
    from tensorrt_llm import LLM, SamplingParams

    try:  # the PyTorch backend on the HF export: the default from 1.0, the only one from 1.3
        llm = LLM(model=path, dtype=dtype, backend="pytorch")
    except TypeError:  # a release whose LLM() takes no backend argument (PyTorch only)
        llm = LLM(model=path, dtype=dtype)

    def generate(prompts, n):
        params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0)
        llm.generate(prompts, params)

    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(path).vocab_size
    res = _generate_timing(generate, batches, prompt_length, decode_tokens, repeats, vocab)
    return {"results": res, "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20}


RUNNERS = {"transformers": transformers_run, "vllm": vllm_run, "trtllm": trtllm_run}
