"""Text generation on megatron-core's static inference engine, at any TP/PP, CPU or GPU.

    gen = Generator(model, arch, tokenizer, batch_size=8)
    rows = gen.generate([[ids...], [ids...]], SamplingConfig(max_new_tokens=32))

The engine (``StaticInferenceEngine`` + ``TextGenerationController`` + ``GPTInferenceWrapper``
over a ``StaticInferenceContext`` KV cache) right-pads a batch, prefills up to its shortest
prompt, then advances every row one position per step, feeding longer prompts' own tokens
until they run out: batched and unbatched greedy decoding agree. Every rank runs every
request: with TP the logits are gathered and every rank samples the same token; with PP the
last stage's logits are broadcast to the others.

What the engine leaves to us, done here:
- stop strings, and end-of-sequence ids besides the tokenizer's own (``generation_config``'s
  list): the engine stops a row on one ``eod`` id only, so completions are cut afterwards;
- reproducible sampling: the controller's generator is reseeded per batch, and the global
  RNG the engine resets on every call is restored afterwards;
- the model's train/eval mode is restored after a call.

``legacy=True``: the engine's default first tries the dynamic engine, whose attention needs
flash-attn and which reserves a 40 GB KV buffer; the static loop is what runs on CPU and GPU
alike.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Optional, Sequence

import torch

from minitron.config.generate import SamplingConfig


@dataclasses.dataclass
class Completion:
    """One prompt's completion. ``finish``: ``eos`` (an end-of-sequence token, not in
    ``tokens``), ``stop`` (a stop string; ``text`` ends before it), or ``length``."""

    tokens: list[int]
    text: str
    finish: str
    prompt_tokens: int
    seconds: float  # the wall time of the batch this prompt was generated in


class EngineTokenizer:
    """The tokenizer interface megatron-core's controller calls: ``tokenize``, ``detokenize``,
    ``eod`` (the pad value and the stop id), ``bos``, ``vocab_size``, ``offsets``."""

    def __init__(self, tok, eod: int):
        self.tok, self.eod, self.bos = tok, int(eod), tok.bos_token_id
        self.vocab_size = len(tok)

    def tokenize(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def detokenize(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def offsets(self, ids, text: str) -> list[int]:
        enc = self.tok(text, return_offsets_mapping=True, add_special_tokens=False)
        return [s for s, _ in enc["offset_mapping"]]


def eos_ids(tokenizer, extra: Sequence[int] = ()) -> list[int]:
    """The tokenizer's end-of-sequence id first, then any others (``generation_config.json``'s
    list), without repeats."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for i in extra:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise ValueError(
            "the tokenizer has no end-of-sequence token: generation could not stop "
            "before max_new_tokens; set eos_token in its tokenizer_config.json"
        )
    return ids


def generation_eos(tok_dir) -> list[int]:
    """End-of-sequence ids in a model's ``generation_config.json`` (an int or a list), if any."""
    import json
    from pathlib import Path

    f = Path(tok_dir) / "generation_config.json"
    if not f.is_file():
        return []
    eos = json.loads(f.read_text()).get("eos_token_id")
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def cut(
    tokens: list[int], decode, stop_ids: Sequence[int], stop: Sequence[str], ended_on_eos: bool
) -> tuple[list[int], str, str]:
    """(tokens, text, finish) of a raw completion: cut at the first end-of-sequence id, then
    before the first stop string; ``tokens`` keeps the tokens needed to produce ``text``
    (the one holding a stop string's first character is dropped with it). Pure."""
    finish = "eos" if ended_on_eos else "length"
    for j, t in enumerate(tokens):
        if t in stop_ids:
            tokens, finish = tokens[:j], "eos"
            break
    text = decode(tokens)
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not hits:
        return tokens, text, finish
    end = min(hits)
    keep = 0  # the longest token prefix whose text does not reach the stop string
    while keep < len(tokens) and len(decode(tokens[: keep + 1])) <= end:
        keep += 1
    return tokens[:keep], text[:end], "stop"


def _quiet_engine() -> None:
    """The static engine draws a progress bar for every batch; ours are one call each."""
    from megatron.core.inference.engines import static_engine

    if getattr(static_engine, "_minitron_quiet", False):
        return
    bar = static_engine.tqdm

    def quiet(*args, **kwargs):
        return bar(*args, **{**kwargs, "disable": True})

    static_engine.tqdm, static_engine._minitron_quiet = quiet, True


class Generator:
    """Batched generation for a loaded megatron-core ``GPTModel`` (this rank's part of it)."""

    def __init__(self, model, arch, tokenizer, batch_size: int = 8, extra_eos: Sequence[int] = ()):
        from minitron.parallel import cpu_compat

        cpu_compat.enable_inference()
        _quiet_engine()
        self.model, self.arch, self.tok = model, arch, tokenizer
        self.batch_size = int(batch_size)
        self.stop_ids = eos_ids(tokenizer, extra_eos)
        self.engine_tok = EngineTokenizer(tokenizer, self.stop_ids[0])

    def _engine(self, n_rows: int, max_seq: int):
        from megatron.core.inference.contexts import StaticInferenceContext
        from megatron.core.inference.engines import StaticInferenceEngine
        from megatron.core.inference.model_inference_wrappers.gpt.gpt_inference_wrapper import (
            GPTInferenceWrapper,
        )
        from megatron.core.inference.model_inference_wrappers.inference_wrapper_config import (
            InferenceWrapperConfig,
        )
        from megatron.core.inference.text_generation_controllers.text_generation_controller import (
            TextGenerationController,
        )

        cfg = InferenceWrapperConfig(
            hidden_size=self.arch.hidden_size,
            params_dtype=self.model.config.params_dtype,
            inference_batch_times_seqlen_threshold=-1,  # PP: never split a batch into micro-batches
            padded_vocab_size=self.arch.padded_vocab_size,
            inference_max_requests=n_rows,
            inference_max_seq_length=max_seq,
            fp32_residual_connection=False,
        )
        wrapped = GPTInferenceWrapper(self.model, cfg, StaticInferenceContext.from_config(cfg))
        controller = TextGenerationController(wrapped, self.engine_tok)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # legacy=True is deprecated in favour of the dynamic engine
            engine = StaticInferenceEngine(controller, max_batch_size=n_rows, legacy=True)
        return engine, controller

    def _params(self, s: SamplingConfig):
        from megatron.core.inference.sampling_params import SamplingParams

        if s.do_sample:
            p = SamplingParams(
                temperature=float(s.temperature),
                top_k=int(s.top_k),
                top_p=float(s.top_p),
                num_tokens_to_generate=s.max_new_tokens,
            )
        else:
            p = SamplingParams(top_k=1, num_tokens_to_generate=s.max_new_tokens)  # argmax
        return p

    def _batch(self, prompts: list[list[int]], s: SamplingConfig, seed: int) -> list[Completion]:
        from megatron.core.inference.inference_request import InferenceRequest

        t0 = time.perf_counter()
        engine, controller = self._engine(len(prompts), max(map(len, prompts)) + s.max_new_tokens)
        controller.sampling_rng.manual_seed(seed)
        params = self._params(s)
        requests = [
            InferenceRequest(
                request_id=engine.get_new_request_id(),
                prompt="",
                prompt_tokens=list(p),
                sampling_params=params,
            )
            for p in prompts
        ]
        done = engine.generate(inference_requests=requests)
        seconds = time.perf_counter() - t0
        out = []
        for p, r in zip(prompts, done):
            raw = r.generated_tokens.tolist()[: int(r.generated_length)]
            tokens, text, finish = cut(
                raw,
                self.tok.decode,
                self.stop_ids,
                s.stop,
                ended_on_eos=len(raw) < s.max_new_tokens,
            )
            out.append(Completion(tokens, text, finish, len(p), seconds))
        return out

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Optional[SamplingConfig] = None
    ) -> list[Completion]:
        """Completions of token-id prompts, in their order. Collective: every rank of the model
        passes the same prompts. Prompts are batched by length (``batch_size`` at a time)."""
        s = sampling or SamplingConfig()
        if any(len(p) == 0 for p in prompts):
            raise ValueError("an empty prompt: every prompt needs at least one token")
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Optional[Completion]] = [None] * len(prompts)
        training = self.model.training
        rng = torch.get_rng_state()
        try:
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                batch = self._batch([list(prompts[i]) for i in idx], s, s.seed + b)
                for i, c in zip(idx, batch):
                    results[i] = c
        finally:
            torch.set_rng_state(rng)  # the engine reseeds the global generator on every call
            self.model.train(training)
        completions = [c for c in results if c is not None]
        assert len(completions) == len(prompts), "a prompt got no completion"
        return completions
