"""Read checkpoints of the Megatron family: Megatron-LM, Megatron-Bridge and NeMo 2.

What a user may pass, and what is found there::

    Megatron-LM      DIR/latest_checkpointed_iteration.txt  ("release" or an iteration)
                     DIR/iter_0000100/ or DIR/release/       torch_dist; args in common.pt
                     (or the iter_*/release directory itself)
    Megatron-Bridge  the same, each iteration directory adding run_config.yaml (the model
                     provider) and optionally tokenizer/
    NeMo 2           DIR/weights/ (torch_dist, keys under "module.") + DIR/context/model.yaml

Only model tensors are read (optimizer and RNG entries are left alone), through
:func:`minitron.checkpoint.gate.dist_load`; ``common.pt`` is read only through the gate
(:func:`~minitron.checkpoint.gate.read_common`), YAML with ``safe_load``. megatron-core
reshards the global tensors to whatever TP/PP layout the model is built with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Optional

from minitron.checkpoint import gate
from minitron.errors import CheckpointError, ConfigError
from minitron.formats import ITERATION_DIR as _ITER
from minitron.formats import TRACKER

RUN_CONFIG = "run_config.yaml"
KINDS = ("megatron-lm", "megatron-bridge", "nemo2")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclasses.dataclass
class Source:
    """A Megatron-family checkpoint, located and described (no tensor read yet)."""

    kind: str
    """megatron-lm | megatron-bridge | nemo2."""
    path: Path
    """What the user passed."""
    weights: Path
    """The torch_dist directory holding the model tensors."""
    prefix: str
    """Prefix of every model key in it ("module." for NeMo 2)."""
    arch_doc: dict
    """The architecture as the checkpoint states it (args, provider or NeMo config)."""
    arch_from: str
    """Where ``arch_doc`` was read, for messages (``.../common.pt args``)."""
    tokenizer: Optional[Path]
    """An HF tokenizer directory found with the checkpoint, if any."""
    content_metadata: dict
    """megatron-core content metadata the checkpoint was saved with (sharding options)."""


def _iteration_dir(root: Path) -> Path:
    text = (root / TRACKER).read_text().strip()
    if text == "release":
        name = "release"
    elif text.isdigit():
        name = f"iter_{int(text):07d}"
    else:
        raise CheckpointError(
            f"{root / TRACKER}: holds {text[:40]!r}, neither 'release' nor an iteration number"
        )
    d = root / name
    if not d.is_dir():
        raise CheckpointError(
            f"{root / TRACKER} points to {name}/, which is not in {root}; "
            "the checkpoint is incomplete (pass an iteration directory)"
        )
    return d


def _tokenizer_dir(*candidates) -> Optional[Path]:
    for c in candidates:
        if c and Path(c).is_dir() and any((Path(c) / f).is_file() for f in _TOKENIZER_FILES):
            return Path(c)
    return None


def _yaml(path: Path) -> dict:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path}: not readable YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top")
    return doc


def _args(weights: Path, common: dict) -> dict:
    args = common.get("args")
    if args is None:
        raise CheckpointError(
            f"{weights}/common.pt has no 'args' and there is no "
            f"{RUN_CONFIG}: the architecture is not recorded; minitron "
            "cannot tell what model this is"
        )
    if isinstance(args, dict):
        return args
    if not hasattr(args, "__dict__") or isinstance(args, gate.Record):
        raise CheckpointError(
            f"{weights}/common.pt: 'args' is a {type(args).__name__}, not an argparse namespace"
        )
    return {
        k: v
        for k, v in vars(args).items()
        if isinstance(v, (int, float, str, bool, type(None), list))
    }


def _plain(md) -> dict:
    """Content metadata's plain entries (sharding switches; never objects)."""
    if not isinstance(md, dict):
        return {}
    return {k: v for k, v in md.items() if isinstance(v, (bool, int, float, str))}


def _megatron(root: Path, it: Path) -> Source:
    common = gate.read_common(it)
    content = _plain(common.get("content_metadata"))
    run_config = it / RUN_CONFIG
    if run_config.is_file():
        doc = _yaml(run_config)
        model = doc.get("model")
        if not isinstance(model, dict):
            raise CheckpointError(f"{run_config}: no 'model' section (the model provider)")
        tok_cfg = doc.get("tokenizer") or {}
        tok = _tokenizer_dir(it / "tokenizer", tok_cfg.get("tokenizer_model"))
        return Source("megatron-bridge", root, it, "", model, f"{run_config} model", tok, content)
    args = _args(it, common)
    tok = _tokenizer_dir(
        it / "tokenizer",
        args.get("tokenizer_model")
        if args.get("tokenizer_type") == "HuggingFaceTokenizer"
        else None,
    )
    return Source("megatron-lm", root, it, "", args, f"{it}/common.pt args", tok, content)


def _nemo2(root: Path) -> Source:
    model_yaml = root / "context" / "model.yaml"
    if not model_yaml.is_file():
        raise CheckpointError(
            f"{root}: a NeMo 2 checkpoint without context/model.yaml; the "
            "architecture is not recorded"
        )
    doc = _yaml(model_yaml)
    config = doc.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{model_yaml}: no 'config' section")
    tok_cfg = doc.get("tokenizer") or {}
    named = tok_cfg.get("pretrained_model_name") if isinstance(tok_cfg, dict) else None
    if isinstance(named, dict):  # a NeMo artifact reference
        named = named.get("path") or named.get("attr")
    if isinstance(named, str) and not Path(named).is_absolute():
        named = root / "context" / named if (root / "context" / named).exists() else named
    tok = _tokenizer_dir(root / "context" / "nemo_tokenizer", named)
    return Source(
        "nemo2", root, root / "weights", "module.", config, f"{model_yaml} config", tok, {}
    )


def open_source(path: str | Path) -> Source:
    """Locate and describe the Megatron-family checkpoint at ``path``."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such directory")
    if (p / TRACKER).is_file():
        return _megatron(p, _iteration_dir(p))
    if _ITER.match(p.name) and (p / "metadata.json").is_file():
        return _megatron(p, p)
    if (p / "weights" / "metadata.json").is_file() and (p / "context").is_dir():
        return _nemo2(p)
    if (p / "mp_rank_00").is_dir() or any(p.glob("iter_*/mp_rank_00")):
        raise CheckpointError(
            f"{p}: a legacy Megatron-LM checkpoint (mp_rank_*/"
            "model_optim_rng.pt, pickled); convert it to torch_dist with "
            "Megatron-LM (--ckpt-convert-format torch_dist) first"
        )
    raise CheckpointError(
        f"{p}: not a Megatron-LM/Megatron-Bridge checkpoint ({TRACKER}, or an "
        "iter_*/release directory with metadata.json) nor a NeMo 2 one "
        "(weights/ + context/)"
    )


def source_arch(src: Source, vocab_size: Optional[int], vocab_pad_multiple: Optional[int] = None):
    """The :class:`ModelArch` a source describes (``vocab_size``: its tokenizer's size)."""
    from minitron.models import megatron_arch as M
    from minitron.models.arch import DEFAULT_VOCAB_PAD_MULTIPLE

    mult = vocab_pad_multiple or DEFAULT_VOCAB_PAD_MULTIPLE
    if src.kind == "megatron-lm":
        arch = M.arch_from_args(src.arch_doc, vocab_size, src.arch_from, mult)
        tie_field = "untie_embeddings_and_output_weights"
    else:
        arch = M.arch_from_config(src.arch_doc, vocab_size, src.arch_from, mult)
        tie_field = "share_embeddings_and_output_weights"
    keys = set(stored_keys(src.weights))
    if f"{src.prefix}embedding.word_embeddings.weight" not in keys:
        raise CheckpointError(
            f"{src.weights}: no {src.prefix}embedding.word_embeddings.weight; "
            f"not a GPT model's weights (stored: {sorted(keys)[:3]})"
        )
    has_output = f"{src.prefix}output_layer.weight" in keys
    if has_output == arch.tie_word_embeddings:
        raise ConfigError(
            tie_field,
            f"{src.arch_from} says the output layer is "
            f"{'tied to' if arch.tie_word_embeddings else 'separate from'} the "
            f"embedding, but the weights {'hold' if has_output else 'lack'} "
            "output_layer.weight; the checkpoint is inconsistent",
        )
    return arch


def layout_metadata(src: Source) -> dict:
    """The ``metadata`` to build the model's sharded state dict with: the checkpoint's
    content metadata, and per-layer keys when the checkpoint stores layers one by one
    (``decoder.layers.0.…``) rather than stacked (``decoder.layers.…``)."""
    md = dict(src.content_metadata)
    layered = re.compile(re.escape(src.prefix) + r"decoder\.layers\.\d+\.")
    if any(layered.match(k) for k in stored_keys(src.weights)):
        md["non_homogeneous_layers"] = True
    return md


def stored_keys(weights: Path) -> list[str]:
    """The tensor keys a torch_dist directory stores (from its gated metadata)."""
    with open(weights / ".metadata", "rb") as f:
        md = gate.check_pickle(f, str(weights / ".metadata"))
    return list(getattr(md, "state_dict_metadata", {}) or {})


def load_weights(model, src: Source) -> None:
    """Fill a built model (any TP/PP) with the source's model tensors."""
    from megatron.core.dist_checkpointing.validation import StrictHandling
    from torch.distributed.checkpoint.api import CheckpointException

    sharded = model.sharded_state_dict(prefix=src.prefix, metadata=layout_metadata(src))
    try:
        # megatron-core's names: "unexpected" = requested but not stored; "missing" = stored
        # but not requested (optimizer, RNG: left alone)
        state, _, missing = gate.dist_load(
            sharded, src.weights, foreign=True, strict=StrictHandling.RETURN_ALL
        )
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = lines[-1][:400] if lines else type(e).__name__
        raise CheckpointError(
            f"{src.weights}: the weights do not fit the model its "
            f"{src.arch_from} describes ({reason})"
        ) from None
    missing = sorted(k for k in missing if "_extra_state" not in k)
    if missing:
        raise CheckpointError(
            f"{src.weights}: lacks {len(missing)} tensors the model needs, "
            f"e.g. {missing[:3]} (keys stored: {stored_keys(src.weights)[:3]})"
        )
    n = len(src.prefix)
    state = {k[n:] if k.startswith(src.prefix) else k: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    left = [k for k in result.missing_keys if "_extra_state" not in k]
    if left:
        raise CheckpointError(f"{src.weights}: tensors not loaded: {left[:3]}")


@functools.lru_cache(maxsize=8)
def tokenizer_tokens(tok_dir: Path) -> dict:
    """bos/eos ids and vocabulary size of an HF tokenizer directory (read once per process:
    a stage describes its model, then loads it). Callers copy the dict."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    except Exception as e:
        raise ConfigError(
            "tokenizer", f"no usable tokenizer in {tok_dir} ({type(e).__name__}: {e})"
        ) from None
    out = {"vocab_size": len(tok)}
    for key in ("bos_token_id", "eos_token_id"):
        if getattr(tok, key, None) is not None:
            out[key] = int(getattr(tok, key))
    return out


def describe(
    src: Source,
    tokenizer: Optional[str] = None,
    dtype: str = "float32",
    vocab_pad_multiple: Optional[int] = None,
    field: str = "tokenizer",
):
    """(arch, HF config, tokenizer dir) of a source; ``tokenizer`` overrides the one found
    with the checkpoint. Errors name ``field`` when no tokenizer can be found."""
    from minitron.models.megatron_arch import hf_config_from_arch
    from minitron.models.sources import resolve_tokenizer

    tok_dir = resolve_tokenizer(tokenizer, field) if tokenizer else src.tokenizer
    if tok_dir is None:
        raise ConfigError(
            field,
            f"{src.path} ({src.kind}) carries no Hugging Face tokenizer "
            f"(looked for tokenizer files with it and for the one its "
            f"{src.arch_from} names); pass tokenizer=DIR (an HF tokenizer "
            "directory or Hub id)",
        )
    tokens = dict(tokenizer_tokens(Path(tok_dir)))
    vocab = tokens.pop("vocab_size")
    arch = source_arch(src, vocab, vocab_pad_multiple)
    return arch, hf_config_from_arch(arch, dtype, tokens), tok_dir


def summary(src: Source) -> str:
    return json.dumps({"kind": src.kind, "weights": str(src.weights), "prefix": src.prefix})
