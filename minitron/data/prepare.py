"""Tokenize corpora into megatron-core indexed datasets (``<out>/<name>.bin/.idx``).

Every input is read and checked in full first (empty, binary, non-UTF-8 and
malformed jsonl inputs fail naming file and line before anything is written).
Each dataset is then written to temporary files and renamed into place, with a
sidecar ``<name>.json`` (source, its size and sha256, tokenizer fingerprint, counts); a
rerun skips datasets whose sidecar matches -- the input's content, not its path -- so an
interrupted prepare resumes and an edited input is tokenized again. ``datasets.json``
lists every dataset in ``out``: a prepare of other inputs into the same directory adds
to it (a directory holds one tokenizer's datasets; another tokenizer is refused).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from minitron.checkpoint import atomic
from minitron.config.schema import PrepareConfig
from minitron.data import builtin
from minitron.data.readers import read_documents
from minitron.data.tokenizer import encode_batch, fingerprint, load_tokenizer, token_id
from minitron.errors import DataError

INDEX_FILE = "datasets.json"


def _documents(cfg: PrepareConfig, spec: str) -> Callable[[], Iterator[str]]:
    if builtin.is_builtin(spec):
        return lambda: builtin.builtin_documents(builtin.builtin_name(spec))
    return lambda: read_documents(spec, cfg.jsonl_key, cfg.text_unit)


def _check_inputs(cfg: PrepareConfig) -> dict[str, Callable[[], Iterator[str]]]:
    """name -> document source; every file fully read and parsed once here."""
    sources: dict[str, Callable[[], Iterator[str]]] = {}
    for spec in cfg.inputs:
        name = builtin.dataset_name(spec)
        if name in sources:
            raise DataError(f"{spec}: two inputs map to the dataset name {name!r}; rename one")
        docs = _documents(cfg, spec)
        if not builtin.is_builtin(spec) and sum(1 for d in docs() if d.strip()) == 0:
            raise DataError(f"{spec}: no non-empty documents")
        sources[name] = docs
    return sources


def _write_dataset(prefix: Path, docs: Iterator[str], tok, eod: int, bos: int | None,
                   batch: int) -> dict:
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    dtype = DType.optimal_dtype(len(tok))
    tag = f"tmp.{os.getpid()}"
    tmp_bin, tmp_idx = Path(f"{prefix}.bin.{tag}"), Path(f"{prefix}.idx.{tag}")
    builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
    n_docs = n_tokens = n_empty = 0
    t0 = time.perf_counter()
    pending: list[str] = []

    def flush():
        nonlocal n_docs, n_tokens, n_empty
        for ids in encode_batch(tok, pending):
            if not ids:
                n_empty += 1
                continue
            ids = ([bos] if bos is not None else []) + ids + [eod]
            builder.add_document(np.asarray(ids), [len(ids)])
            n_docs += 1
            n_tokens += len(ids)
        pending.clear()

    for d in docs:
        pending.append(d)
        if len(pending) == batch:
            flush()
    flush()
    builder.finalize(str(tmp_idx))
    seconds = time.perf_counter() - t0
    if n_docs == 0:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
        raise DataError(f"{prefix.name}: every document tokenized to nothing")
    os.replace(tmp_bin, f"{prefix}.bin")
    os.replace(tmp_idx, f"{prefix}.idx")
    return {"documents": n_docs, "tokens": n_tokens, "empty_documents_skipped": n_empty,
            "seconds": round(seconds, 3), "tokens_per_second": round(n_tokens / max(seconds, 1e-9))}


def prepare(cfg: PrepareConfig, log: Callable[[str], None] = print) -> dict:
    """Run ``minitron data prepare``; returns the contents of datasets.json."""
    sources = _check_inputs(cfg)
    tok = load_tokenizer(cfg.tokenizer)
    eod = token_id(tok, cfg.eod_token) if cfg.eod_token else tok.eos_token_id
    if eod is None:
        raise DataError("the tokenizer has no eos token; set eod_token")
    bos = tok.bos_token_id if cfg.add_bos else None
    if cfg.add_bos and bos is None:
        raise DataError("add_bos=true but the tokenizer has no bos token")
    fp = fingerprint(tok)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    kept = _kept_datasets(out, fp, set(sources))
    entries = []
    for spec, (name, docs) in zip(cfg.inputs, sources.items()):
        prefix = out / name
        key = {"source": spec, "content": _content(spec), "tokenizer": fp, "eod": eod,
               "bos": bos, "jsonl_key": cfg.jsonl_key, "text_unit": cfg.text_unit}
        side = Path(f"{prefix}.json")
        done = json.loads(side.read_text()) if side.is_file() else None
        if (done and not cfg.overwrite and done.get("key") == key
                and Path(f"{prefix}.bin").is_file() and Path(f"{prefix}.idx").is_file()):
            log(f"[prepare] {name}: already prepared ({done['stats']['tokens']:,} tokens), skipped")
            stats = done["stats"]
        else:
            stats = _write_dataset(prefix, docs(), tok, eod, bos, cfg.batch_docs)
            atomic.write_text(side, json.dumps({"key": key, "stats": stats}, indent=2))
            log(f"[prepare] {name}: {stats['documents']:,} documents, {stats['tokens']:,} tokens, "
                f"{stats['tokens_per_second']:,} tokens/s")
        entries.append({"name": name, "prefix": name, **key, **stats})
    index = {"tokenizer": cfg.tokenizer, "tokenizer_fingerprint": fp, "vocab_size": len(tok),
             "eod": eod, "datasets": entries + kept}
    atomic.write_text(out / INDEX_FILE, json.dumps(index, indent=2))
    return index


def _content(spec: str) -> dict:
    """What identifies an input's content: a file's size and sha256 (a built-in corpus: the
    minitron version that ships it)."""
    if builtin.is_builtin(spec):
        from minitron import __version__

        return {"builtin": spec, "minitron": __version__}
    p = Path(spec)
    return {"size": p.stat().st_size, "sha256": atomic.sha256(p)}


def _kept_datasets(out: Path, fp: str, names: set[str]) -> list[dict]:
    """The datasets an earlier prepare left in ``out`` that this one does not rewrite."""
    index = out / INDEX_FILE
    if not index.is_file():
        return []
    try:
        old = json.loads(index.read_text())
    except ValueError:
        raise DataError(f"{index} is corrupted; remove it (the datasets are then prepared "
                        "again)") from None
    kept = [e for e in old.get("datasets", []) if e.get("name") not in names
            and Path(out / f"{e.get('prefix')}.bin").is_file()]
    if kept and old.get("tokenizer_fingerprint") != fp:
        raise DataError(f"{out} already holds {', '.join(e['name'] for e in kept)} tokenized "
                        f"with another tokenizer ({old.get('tokenizer')}); prepare into another "
                        "--out (a directory holds one tokenizer's datasets)")
    return kept
