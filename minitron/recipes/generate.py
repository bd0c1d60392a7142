"""``minitron generate``: completions on megatron-core's inference engine, at any TP/PP.

    minitron generate --model ckpt/student --prompt "The capital of France is"
    minitron generate --model ckpt/student --input prompts.jsonl --out completions.jsonl
    minitron generate --model ckpt/sft --input chats.jsonl --out out.jsonl chat=auto \\
        sampling.do_sample=true sampling.temperature=0.7 sampling.top_p=0.9
    torchrun --nproc_per_node 2 -m minitron generate --model ckpt/student --prompt "Hi" tp=2

Input rows: ``{"prompt": "..."}`` or ``{"messages": [{"role": "user", "content": "..."}]}``,
optionally with an ``id``. Output rows, in input order: ``id``, ``prompt`` (as rendered),
``completion``, ``prompt_tokens``, ``completion_tokens``, ``finish`` (eos, stop, length) and
``seconds`` (the batch's wall time). The output is rewritten atomically after every chunk of
prompts; a rerun continues after the rows already there, with the same completions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from minitron.config.generate import GenerateConfig
from minitron.data.readers import read_jsonl_rows
from minitron.errors import ConfigError, DataError
from minitron.parallel import runtime

CHUNK_BATCHES = 4  # batches per atomic write of the output


def read_prompts(path: str) -> list[dict]:
    """Rows ``{"id", "prompt" | "messages"}`` of a prompts jsonl (errors name file and line)."""
    rows = []
    for i, (where, row) in enumerate(read_jsonl_rows(Path(path))):
        if not isinstance(row, dict) or not (
            isinstance(row.get("prompt"), str) or isinstance(row.get("messages"), list)
        ):
            raise DataError(f"{where}: each row needs prompt (text) or messages (a chat)")
        rows.append(
            {"id": row.get("id", i), **{k: row[k] for k in ("prompt", "messages") if k in row}}
        )
    if not rows:
        raise DataError(f"{path}: no prompts")
    return rows


def render(rows: list[dict], tok, chat: str) -> list[str]:
    """Each row's prompt text: as given (``chat=none``) or rendered as a chat whose assistant
    turn is open (the tokenizer's template, or the plain one), as ``minitron align`` renders."""
    from minitron.align.data import ChatRenderer

    renderer = None if chat == "none" else ChatRenderer(tok, chat)
    out = []
    for r in rows:
        if renderer is None:
            if "prompt" not in r:
                raise ConfigError(
                    "chat",
                    f"row {r['id']} is a chat (messages): set chat=auto "
                    "(the model's chat template) or chat=plain",
                )
            out.append(r["prompt"])
        else:
            msgs = r.get("messages") or [{"role": "user", "content": r["prompt"]}]
            out.append(renderer.text(msgs, generation_prompt=True))
    return out


def encode(tok, text: str, chat: str) -> list[int]:
    """A rendered chat carries its own special tokens; a plain prompt gets the tokenizer's
    (as ``transformers`` encodes it by default)."""
    return tok(text, add_special_tokens=chat == "none")["input_ids"]


def done_rows(out: Path) -> list[dict]:
    if not out.is_file():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _write(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(out)


def load(cfg: GenerateConfig):
    """(generator, tokenizer) for ``cfg.model`` (initialises the TP/PP runtime)."""
    from minitron.checkpoint.load import load_model
    from minitron.data.tokenizer import load_tokenizer, tokenizer_dir
    from minitron.generate.engine import Generator, generation_eos

    tok_spec = cfg.tokenizer or cfg.model
    tok = load_tokenizer(tok_spec)  # a missing tokenizer fails before the model loads
    runtime.init(cfg.tp, cfg.pp)
    model, arch, _ = load_model(cfg.model, cfg.dtype)
    gen = Generator(
        model, arch, tok, cfg.batch_size, extra_eos=generation_eos(tokenizer_dir(tok_spec))
    )
    return gen, tok


def main(cfg: GenerateConfig, log=print) -> Optional[list[dict]]:
    rows: list[dict]
    if cfg.prompt is not None:
        rows = [{"id": 0, "prompt": cfg.prompt}]
    elif cfg.input is not None:
        rows = read_prompts(cfg.input)
    else:  # validate() refuses this too
        raise ConfigError(
            "prompt", "give exactly one of prompt (one text) and input (a jsonl file of prompts)"
        )
    out = Path(cfg.out) if cfg.out else None
    written = done_rows(out) if out and cfg.input else []
    if len(written) > len(rows):
        raise ConfigError(
            "out",
            f"{out} has {len(written)} rows but {cfg.input} only "
            f"{len(rows)} prompts: is it the output of another input?",
        )
    gen, tok = load(cfg)
    texts = render(rows, tok, cfg.chat)
    lay = runtime.layout()
    main_rank = lay.is_main
    if main_rank:
        log(
            f"[generate] {cfg.model}: layout tp={lay.tp} pp={lay.pp} dp={lay.dp}, {len(rows)} prompt(s)"
        )
    chunk = cfg.batch_size * CHUNK_BATCHES
    if written and main_rank:
        log(f"[generate] {len(written)} of {len(rows)} prompts already in {out}; continuing")
    for start in range(len(written), len(rows), chunk):
        ids = [encode(tok, t, cfg.chat) for t in texts[start : start + chunk]]
        sampling = dataclasses.replace(cfg.sampling, seed=cfg.sampling.seed + start)
        for k, c in enumerate(gen.generate(ids, sampling)):
            written.append(
                {
                    "id": rows[start + k]["id"],
                    "prompt": texts[start + k],
                    "completion": c.text,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": len(c.tokens),
                    "finish": c.finish,
                    "seconds": round(c.seconds, 3),
                }
            )
        if out and main_rank:
            _write(out, written)
        if main_rank and cfg.input:
            log(f"[generate] {len(written)}/{len(rows)} prompts")
    if main_rank and cfg.prompt is not None:
        r = written[0]
        log(f"{r['prompt']}{r['completion']}")
        log(f"[generate] {r['completion_tokens']} tokens ({r['finish']}) in {r['seconds']} s")
    return written
