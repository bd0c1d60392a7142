"""Tokenize corpora into megatron-core indexed datasets (``<out>/<name>.bin/.idx``).

Every input is read and checked in full first (empty, binary, non-UTF-8 and
malformed jsonl inputs fail naming file and line before anything is written).
Each dataset is then written to temporary files and renamed into place, with a
sidecar ``<name>.json`` (source, its size and sha256, tokenizer fingerprint, counts); a
rerun skips datasets whose sidecar matches -- the input's content, not its path -- so an
interrupted prepare resumes and an edited input is tokenized again. ``datasets.json``
lists every dataset in ``out``: a prepare of other inputs into the same directory adds
to it (a directory holds one tokenizer's datasets; another tokenizer is refused).

``workers`` > 1 tokenizes in a process pool: the documents go out in chunks of
``batch_docs`` and come back in order, so the .bin/.idx are byte-identical to a
one-process run. Under torchrun (the recipe passes ``rank``/``world``) rank r takes
inputs r, r+W, ...; rank 0 writes ``datasets.json`` once every rank has written its own.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from minitron.checkpoint import atomic
from minitron.config.schema import PrepareConfig
from minitron.data import builtin
from minitron.data.readers import read_documents
from minitron.data.tokenizer import (
    encode_batch,
    fingerprint,
    load_tokenizer,
    token_id,
    tokenizer_dir,
)
from minitron.errors import DataError, MinitronError
from minitron.parallel.collectives import broadcast_object, first_error

INDEX_FILE = "datasets.json"


def _documents(cfg: PrepareConfig, spec: str) -> Callable[[], Iterator[str]]:
    if builtin.is_builtin(spec):
        return lambda: builtin.builtin_documents(builtin.builtin_name(spec))
    return lambda: read_documents(spec, cfg.jsonl_key, cfg.text_unit)


def _names(inputs: list[str]) -> list[str]:
    names: list[str] = []
    for spec in inputs:
        name = builtin.dataset_name(spec)
        if name in names:
            raise DataError(f"{spec}: two inputs map to the dataset name {name!r}; rename one")
        names.append(name)
    return names


def _check_inputs(cfg: PrepareConfig, specs: list[str]) -> dict[str, Callable[[], Iterator[str]]]:
    """name -> document source for ``specs``; every file fully read and parsed once here."""
    sources: dict[str, Callable[[], Iterator[str]]] = {}
    for spec in specs:
        docs = _documents(cfg, spec)
        if not builtin.is_builtin(spec) and sum(1 for d in docs() if d.strip()) == 0:
            raise DataError(f"{spec}: no non-empty documents")
        sources[builtin.dataset_name(spec)] = docs
    return sources


AUTO_BYTES_PER_WORKER = 8 << 20  # workers=0 starts a pool only for inputs worth its start-up


def resolve_workers(
    workers: int, ranks_per_node: int = 1, input_bytes: Optional[int] = None
) -> int:
    """``workers``, or for 0 the cores this process may run on shared among the node's ranks,
    and no more than one per 8 MB of input files (a worker's start-up, loading the
    tokenizer, costs about a second: small inputs tokenize faster in this process)."""
    if workers:
        return workers
    n = max(1, len(os.sched_getaffinity(0)) // max(1, ranks_per_node))
    if input_bytes is not None:
        n = min(n, max(1, input_bytes // AUTO_BYTES_PER_WORKER))
    return n


def _encode(tok, docs: list[str], eod: int, bos: Optional[int], dtype):
    """One chunk -> (its documents' tokens concatenated ``[n]``, per-document lengths, empties).

    A document gets ``[bos] + ids + [eod]``; one that tokenizes to nothing is skipped."""
    kept = [ids for ids in encode_batch(tok, docs) if ids]
    pre = [bos] if bos is not None else []
    lengths = [len(pre) + len(ids) + 1 for ids in kept]
    flat = np.fromiter(
        itertools.chain.from_iterable(pre + ids + [eod] for ids in kept),
        dtype=dtype,
        count=sum(lengths),
    )
    return flat, lengths, len(docs) - len(kept)


_WORKER_TOKENIZER = None


def _init_worker(tokenizer: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = (
        "false"  # one core per worker: the pool is the parallelism
    )
    _WORKER_TOKENIZER = load_tokenizer(tokenizer)


def _encode_in_worker(docs: list[str], eod: int, bos: Optional[int], dtype):
    return _encode(_WORKER_TOKENIZER, docs, eod, bos, dtype)


class _Encoder:
    """Chunks of documents -> encoded chunks, in order: in this process, or in a pool of
    ``workers`` (spawned: safe next to torch's and gloo's threads) with at most
    ``2 * workers`` chunks in flight, so memory stays bounded on any corpus size."""

    def __init__(self, tok, tokenizer: str, workers: int):
        self.tok, self.workers = tok, workers
        self.pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer,))

    def map(self, chunks: Iterable[list[str]], eod: int, bos: Optional[int], dtype):
        if self.pool is None:
            for c in chunks:
                yield _encode(self.tok, c, eod, bos, dtype)
            return
        flight: deque = deque()
        for c in chunks:
            flight.append(self.pool.apply_async(_encode_in_worker, (c, eod, bos, dtype)))
            if len(flight) >= 2 * self.workers:
                yield flight.popleft().get()
        while flight:
            yield flight.popleft().get()

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None


def _chunks(docs: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def _write_dataset(
    prefix: Path,
    docs: Iterator[str],
    encoder: _Encoder,
    dtype,
    eod: int,
    bos: int | None,
    batch: int,
) -> dict:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tag = f"tmp.{os.getpid()}"
    tmp_bin, tmp_idx = Path(f"{prefix}.bin.{tag}"), Path(f"{prefix}.idx.{tag}")
    builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
    n_docs = n_tokens = n_empty = 0
    t0 = time.perf_counter()
    for flat, lengths, empty in encoder.map(_chunks(docs, batch), eod, bos, dtype):
        start = 0
        for n in lengths:
            builder.add_document(flat[start : start + n], [n])
            start += n
        n_docs += len(lengths)
        n_tokens += start
        n_empty += empty
    builder.finalize(str(tmp_idx))
    seconds = time.perf_counter() - t0
    if n_docs == 0:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
        raise DataError(f"{prefix.name}: every document tokenized to nothing")
    os.replace(tmp_bin, f"{prefix}.bin")
    os.replace(tmp_idx, f"{prefix}.idx")
    return {
        "documents": n_docs,
        "tokens": n_tokens,
        "empty_documents_skipped": n_empty,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(n_tokens / max(seconds, 1e-9)),
    }


def _agree(world: int, fn, *args):
    """``fn(*args)`` on every rank; a MinitronError on any rank is raised on all of them, so
    one rank's bad input stops every rank before (or after) its own writes. With
    ``world`` 1 no collective is issued (a caller may run this on one rank of many)."""
    result, own = None, None
    try:
        result = fn(*args)
    except MinitronError as e:
        own = e
    other = first_error(None if own is None else str(own)) if world > 1 else None
    if own is not None:
        raise own
    if other is not None:
        raise DataError(f"another rank failed: {other}")
    return result


def prepare(
    cfg: PrepareConfig,
    log: Callable[[str], None] = print,
    rank: int = 0,
    world: int = 1,
    ranks_per_node: int = 1,
) -> dict:
    """Run ``minitron data prepare``; returns the contents of datasets.json.

    With ``world`` > 1 (an initialised process group), this rank prepares inputs
    ``rank, rank + world, ...``; every rank returns the same index."""
    names = _names(cfg.inputs)
    mine = list(range(rank, len(cfg.inputs), world))
    sources = _agree(world, _check_inputs, cfg, [cfg.inputs[i] for i in mine])
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
    kept = _kept_datasets(out, fp, set(names))
    keys = {
        name: {
            "source": spec,
            "content": _content(spec),
            "tokenizer": fp,
            "eod": eod,
            "bos": bos,
            "jsonl_key": cfg.jsonl_key,
            "text_unit": cfg.text_unit,
        }
        for i, (spec, name) in enumerate(zip(cfg.inputs, names))
        if i in mine
    }
    todo = [name for name in sources if not _done(out / name, keys[name], cfg.overwrite, log)]
    _agree(world, _write_all, cfg, out, todo, sources, keys, tok, eod, bos, log, ranks_per_node)
    index: Optional[dict] = None
    if rank == 0:
        entries = []
        for name in names:
            side = json.loads((out / f"{name}.json").read_text())
            entries.append({"name": name, "prefix": name, **side["key"], **side["stats"]})
        index = {
            "tokenizer": cfg.tokenizer,
            "tokenizer_fingerprint": fp,
            "vocab_size": len(tok),
            "eod": eod,
            "datasets": entries + kept,
        }
        atomic.write_text(out / INDEX_FILE, json.dumps(index, indent=2))
    if world > 1:
        return broadcast_object(index)
    assert index is not None  # one rank: rank 0, which wrote it
    return index


def _done(prefix: Path, key: dict, overwrite: bool, log) -> bool:
    """Whether ``prefix`` was already prepared from this very content and tokenizer."""
    side = Path(f"{prefix}.json")
    done = json.loads(side.read_text()) if side.is_file() else None
    if (
        done
        and not overwrite
        and done.get("key") == key
        and Path(f"{prefix}.bin").is_file()
        and Path(f"{prefix}.idx").is_file()
    ):
        log(
            f"[prepare] {prefix.name}: already prepared ({done['stats']['tokens']:,} tokens), "
            "skipped"
        )
        return True
    return False


def _write_all(
    cfg: PrepareConfig,
    out: Path,
    todo: list[str],
    sources: dict,
    keys: dict,
    tok,
    eod: int,
    bos: Optional[int],
    log,
    ranks_per_node: int,
) -> None:
    """Tokenize the datasets in ``todo``, each with its sidecar, through one encoder."""
    from megatron.core.datasets.indexed_dataset import DType

    if not todo:
        return
    dtype = DType.optimal_dtype(len(tok))
    size = sum(
        Path(spec).stat().st_size
        for spec in cfg.inputs
        if not builtin.is_builtin(spec) and builtin.dataset_name(spec) in todo
    )
    workers = resolve_workers(cfg.workers, ranks_per_node, size)
    encoder = _Encoder(tok, str(tokenizer_dir(cfg.tokenizer)), workers)
    ok = False
    try:
        for name in todo:
            stats = _write_dataset(
                out / name, sources[name](), encoder, dtype, eod, bos, cfg.batch_docs
            )
            atomic.write_text(
                out / f"{name}.json", json.dumps({"key": keys[name], "stats": stats}, indent=2)
            )
            log(
                f"[prepare] {name}: {stats['documents']:,} documents, {stats['tokens']:,} "
                f"tokens, {stats['tokens_per_second']:,} tokens/s ({workers} worker"
                f"{'s' if workers > 1 else ''})"
            )
        ok = True
    finally:
        encoder.close(ok)


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
        raise DataError(
            f"{index} is corrupted; remove it (the datasets are then prepared again)"
        ) from None
    kept = [
        e
        for e in old.get("datasets", [])
        if e.get("name") not in names and Path(out / f"{e.get('prefix')}.bin").is_file()
    ]
    if kept and old.get("tokenizer_fingerprint") != fp:
        raise DataError(
            f"{out} already holds {', '.join(e['name'] for e in kept)} tokenized "
            f"with another tokenizer ({old.get('tokenizer')}); prepare into another "
            "--out (a directory holds one tokenizer's datasets)"
        )
    return kept
