"""Alignment data: chat rendering with response-only masks, jsonl loaders, batching.

Rows (one JSON object per line; errors name the file and line):

- SFT: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI style) or
  ``{"prompt": ..., "response": ...}`` (``completion`` / ``output`` also accepted).
- Preferences: ``{"prompt": str | messages, "chosen": str | messages,
  "rejected": str | messages[, "chosen_reward": x, "rejected_reward": y]}``, or the
  Anthropic HH layout ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}``
  (the shared conversation before the last ``Assistant:`` turn is the prompt).

A row with an empty (or whitespace-only) prompt, response, chosen or rejected answer is
a DataError: it would train on the end-of-turn marker alone.

Rendering uses the tokenizer's chat template (``chat_template: auto``) or a plain
``User: ... / Assistant: ...`` template. Only assistant tokens (with the
end-of-turn marker that follows them) are trained on: each assistant turn's span is
the difference between the rendered conversation before it (with the generation
prompt) and after it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional

import torch

from minitron.data.readers import read_jsonl_rows
from minitron.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


@dataclasses.dataclass
class Example:
    ids: list[int]
    mask: list[int]  # 1 where the token is part of a response (trained on / scored)


@dataclasses.dataclass
class Pair:
    chosen: Example
    rejected: Example
    reward_chosen: float
    reward_rejected: float


# ------------------------------------------------------------------ rendering


def _plain(messages: list[dict], generation_prompt: bool) -> str:
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if generation_prompt else "")


class ChatRenderer:
    """Token ids and response mask of a conversation."""

    def __init__(self, tokenizer, template: str = "auto"):
        self.tok = tokenizer
        if template not in ("auto", "plain"):
            raise ConfigError("chat_template", f"{template!r}: valid are auto, plain")
        self.use_tokenizer = template == "auto" and getattr(tokenizer, "chat_template", None)

    def text(self, messages: list[dict], generation_prompt: bool) -> str:
        """The conversation rendered; with ``generation_prompt`` the assistant's turn is left
        open (what a model continues when it answers)."""
        if self.use_tokenizer:
            return self.tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        return _plain(messages, generation_prompt)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def render(self, messages: list[dict], train_on: str = "all") -> Example:
        """``train_on``: ``all`` assistant turns, or ``last`` (preference responses)."""
        ids = self._ids(self.text(messages, False))
        mask = [0] * len(ids)
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for i in turns[-1:] if train_on == "last" else turns:
            start = len(self._ids(self.text(messages[:i], True)))
            end = len(self._ids(self.text(messages[: i + 1], False)))
            for j in range(start, min(end, len(ids))):
                mask[j] = 1
        return Example(ids, mask)


# ------------------------------------------------------------------ rows


def _check_messages(msgs, where: str) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    out = []
    for m in msgs:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(
                f"{where}: every message needs a role ({', '.join(ROLES)}) and a "
                f"string content; got {str(m)[:80]}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _empty(text: str) -> bool:
    return not text.strip()


DROP = "fill it in or drop the row"


def sft_messages(row: dict, where: str) -> list[dict]:
    if "messages" in row:
        msgs = _check_messages(row["messages"], where)
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(f"{where}: no assistant message to train on")
        for k, m in enumerate(msgs):
            if m["role"] == "assistant" and _empty(m["content"]):
                raise DataError(
                    f"{where}: empty response in messages[{k}]; training on it teaches "
                    f"the model to answer with nothing ({DROP})"
                )
        return msgs
    response = next((row[k] for k in ("response", "completion", "output") if k in row), None)
    if "prompt" in row and isinstance(response, str) and isinstance(row["prompt"], str):
        if _empty(response):
            raise DataError(
                f"{where}: empty response; training on it teaches the model to answer "
                f"with nothing ({DROP})"
            )
        if _empty(row["prompt"]):
            raise DataError(f"{where}: empty prompt; the response answers nothing ({DROP})")
        return [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": response},
        ]
    raise DataError(
        f"{where}: an SFT row needs 'messages', or 'prompt' and 'response' strings "
        f"(fields: {', '.join(row)})"
    )


def _split_hh(text: str, where: str) -> list[dict]:
    """'\n\nHuman: ...\n\nAssistant: ...' -> messages."""
    parts = re.split(r"(\n\nHuman:|\n\nAssistant:)", text)
    if HH_ASSISTANT not in parts:
        raise DataError(f"{where}: no '{HH_ASSISTANT.strip()}' turn in the conversation")
    return [
        {"role": "user" if tag == HH_HUMAN else "assistant", "content": body.strip()}
        for tag, body in zip(parts[1::2], parts[2::2])
    ]


def preference_messages(row: dict, where: str) -> tuple[list[dict], list[dict]]:
    """(chosen conversation, rejected conversation), each ending in the assistant response;
    neither answer nor the prompt may be empty."""
    c, r = _preference_conversations(row, where)
    for key, conv in (("chosen", c), ("rejected", r)):
        if conv[-1]["role"] != "assistant":
            raise DataError(f"{where}: the {key} conversation must end in an assistant answer")
        if _empty(conv[-1]["content"]):
            raise DataError(
                f"{where}: empty {key} answer; a pair needs two non-empty answers to "
                f"compare ({DROP})"
            )
    if all(_empty(m["content"]) for m in c[:-1]):
        raise DataError(f"{where}: empty prompt; the answers answer nothing ({DROP})")
    return c, r


def _preference_conversations(row: dict, where: str) -> tuple[list[dict], list[dict]]:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(f"{where}: no {key!r} field (fields: {', '.join(row)})")
    if "prompt" in row:
        prompt = row["prompt"]
        prompt = (
            [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else _check_messages(prompt, where)
        )
        convs = []
        for key in ("chosen", "rejected"):
            r = row[key]
            tail = (
                [{"role": "assistant", "content": r}]
                if isinstance(r, str)
                else _check_messages(r, where)
            )
            convs.append(prompt + tail)
        return convs[0], convs[1]
    if isinstance(row["chosen"], str) and isinstance(row["rejected"], str):  # Anthropic HH
        c, r = _split_hh(row["chosen"], where), _split_hh(row["rejected"], where)
    else:
        c, r = _check_messages(row["chosen"], where), _check_messages(row["rejected"], where)
    if c[:-1] != r[:-1] or c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
        raise DataError(
            f"{where}: chosen and rejected must share the conversation and differ "
            "only in the last assistant turn"
        )
    return c, r


def read_rows(path: str) -> list[tuple[str, dict]]:
    if not Path(path).is_file():
        raise ConfigError("data", f"{path} does not exist")
    return read_jsonl_rows(path)


def load_sft(rows, renderer: ChatRenderer, max_length: int) -> list[Example]:
    out = []
    for where, row in rows:
        ex = renderer.render(sft_messages(row, where))
        out.append(Example(ex.ids[: max_length + 1], ex.mask[: max_length + 1]))
    return out


def load_pairs(
    rows, renderer: ChatRenderer, max_length: int, default_chosen: float, default_rejected: float
) -> list[Pair]:
    out = []
    for where, row in rows:
        c, r = preference_messages(row, where)
        rc = row.get("chosen_reward", default_chosen)
        rr = row.get("rejected_reward", default_rejected)
        if not all(isinstance(x, (int, float)) for x in (rc, rr)):
            raise DataError(f"{where}: rewards must be numbers")
        pc, pr = renderer.render(c, "last"), renderer.render(r, "last")
        for ex in (pc, pr):
            if len(ex.ids) > max_length + 1:
                raise DataError(
                    f"{where}: {len(ex.ids)} tokens, longer than seq_length="
                    f"{max_length}; raise seq_length or drop the row"
                )
        out.append(Pair(pc, pr, float(rc), float(rr)))
    return out


# ------------------------------------------------------------------ batches


def pack(examples: list[Example], seq_length: int, pad_id: int = 0) -> list[dict]:
    """Greedy packing of examples into rows of ``seq_length`` tokens. Each row: tokens,
    labels, loss_mask (response tokens, never across a boundary), and a block-diagonal
    causal ``attention_mask`` ``[1, s, s]`` (True = masked, megatron-core's convention)."""
    rows: list[list[Example]] = []
    cur: list[Example] = []
    for ex in examples:
        # an example of n tokens fills n - 1 input positions (the last token is only a label)
        if cur and sum(len(e.ids) - 1 for e in cur) + len(ex.ids) - 1 > seq_length:
            rows.append(cur)
            cur = []
        cur.append(ex)
    if cur:
        rows.append(cur)
    out = []
    for row in rows:
        tokens = torch.full((seq_length,), pad_id, dtype=torch.long)
        labels = torch.full((seq_length,), pad_id, dtype=torch.long)
        loss_mask = torch.zeros(seq_length)
        segment = torch.full((seq_length,), -1, dtype=torch.long)
        pos = 0
        for k, ex in enumerate(row):
            n = min(len(ex.ids) - 1, seq_length - pos)
            ids = torch.tensor(ex.ids)
            tokens[pos : pos + n] = ids[:n]
            labels[pos : pos + n] = ids[1 : n + 1]
            loss_mask[pos : pos + n] = torch.tensor(ex.mask[1 : n + 1], dtype=torch.float)
            segment[pos : pos + n] = k
            pos += n
        same = segment[:, None] == segment[None, :]
        causal = torch.ones(seq_length, seq_length, dtype=torch.bool).tril()
        attend = same & causal & (segment[:, None] >= 0)
        attend |= torch.eye(seq_length, dtype=torch.bool)  # padding rows attend to themselves
        out.append(
            {
                "tokens": tokens,
                "labels": labels,
                "loss_mask": loss_mask,
                "attention_mask": ~attend[None],
            }
        )
    return out


def pair_rows(pairs: list[Pair], pad_id: int = 0, width: Optional[int] = None) -> dict:
    """Chosen rows then rejected rows, right-padded: tokens, labels, loss_mask [2n, s] and the
    ground-truth rewards [n] each."""
    exs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    s = width or max(len(e.ids) for e in exs) - 1
    tokens = torch.full((len(exs), s), pad_id, dtype=torch.long)
    labels = torch.full((len(exs), s), pad_id, dtype=torch.long)
    loss_mask = torch.zeros(len(exs), s)
    for i, e in enumerate(exs):
        n = len(e.ids) - 1
        tokens[i, :n] = torch.tensor(e.ids[:-1])
        labels[i, :n] = torch.tensor(e.ids[1:])
        loss_mask[i, :n] = torch.tensor(e.mask[1:], dtype=torch.float)
    return {
        "tokens": tokens,
        "labels": labels,
        "loss_mask": loss_mask,
        "reward_chosen": torch.tensor([p.reward_chosen for p in pairs]),
        "reward_rejected": torch.tensor([p.reward_rejected for p in pairs]),
    }


def check_rows(spec: str, kind: str, field: str) -> None:
    """``builtin:<kind>[:split]``, or a jsonl file whose every row is a valid ``kind`` row
    (the structure only: malformed rows raise DataError naming file and line)."""
    if spec.startswith("builtin:"):
        parts = spec.split(":")
        if parts[1] != kind or parts[2:] not in ([], ["train"], ["valid"], ["all"]):
            raise ConfigError(
                field,
                f"{spec!r}: write builtin:{kind}, optionally with :train, "
                ":valid or :all, or give a jsonl file",
            )
        return
    if not Path(spec).is_file():
        raise ConfigError(field, f"{spec} does not exist; give a jsonl file or builtin:{kind}")
    check = sft_messages if kind == "sft" else preference_messages
    for where, row in read_rows(spec):
        check(row, where)
