"""The ``minitron`` command: a table from sub-command to (config schema, recipe).

    minitron <command> [--config X.yaml] [--flag value ...] [key=value ...]
    torchrun --nproc_per_node N -m minitron <command> ...

Values apply in order: schema defaults, the YAML file, flags, ``key=value``
overrides. ``minitron <command> --help-config`` lists every key with its doc.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from minitron.config import loader
from minitron.config.commands import COMMANDS
from minitron.errors import MinitronError


def quiet_megatron() -> None:
    """megatron-core warns at import that apex/TE are absent; on CPU that is expected."""
    for pat in (
        ".*Transformer Engine and Apex are not installed.*",
        ".*Apex is not installed.*",
        ".*TransformerEngine.*not installed.*",
        ".*Please use DTensor instead.*",
        ".*full scope is deprecated.*",
        ".*`load_state_dict` is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message=pat)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _usage() -> str:
    rows = "\n".join(f"  {name:<14}{c.help}" for name, c in COMMANDS.items())
    return (
        "usage: minitron <command> [--config X.yaml] [--flag value] [key=value ...]\n\n"
        f"commands:\n{rows}\n\n`minitron <command> --help-config` lists every config key."
    )


def _split_command(argv: Sequence[str]) -> tuple[Optional[str], list[str]]:
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", list(argv[2:])
    if argv and argv[0] in COMMANDS:
        return argv[0], list(argv[1:])
    return None, list(argv)


def _task_preset(spec: str) -> dict:
    """``--task winogrande`` -> the built-in Winogrande; ``--task path.jsonl`` -> that file."""
    if spec == "winogrande":
        return {"name": "winogrande", "path": "builtin:winogrande"}
    name = spec.rsplit("/", 1)[-1].split(".")[0]
    return {"name": name, "path": spec}


def parse(argv: Sequence[str]):
    """(command name, validated config) from a command line; raises MinitronError."""
    name, rest = _split_command(argv)
    if name is None:
        raise SystemExit(
            _usage()
            if not argv or argv[0] in ("-h", "--help")
            else f"minitron: unknown command {argv[0]!r}\n\n{_usage()}"
        )
    cmd = COMMANDS[name]
    p = argparse.ArgumentParser(prog=f"minitron {name}", description=cmd.help)
    p.add_argument("--config", help="YAML file with this command's keys")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    for flag, key, kind in cmd.flags:
        if kind == "true":
            p.add_argument(flag, dest=key, action="store_const", const=True, default=None)
        elif kind in ("append", "task"):
            p.add_argument(flag, dest=key, action="append", default=None)
        else:
            p.add_argument(flag, dest=key, default=None)
    args, overrides = p.parse_known_args(rest)
    if args.help_config:
        rows = loader.describe(cmd.schema)
        raise SystemExit("\n".join(f"{k} ({t}, default {d})\n    {doc}" for k, t, d, doc in rows))
    values = {key: getattr(args, key) for _, key, _ in cmd.flags if getattr(args, key) is not None}
    for _, key, kind in cmd.flags:
        if kind == "task" and key in values:  # --task NAME: a task preset (builtin or a file)
            values[key] = [_task_preset(v) for v in values[key]]
        elif kind == "csv" and key in values:  # --tasks a,b
            values[key] = [v for v in values[key].split(",") if v]
    config = args.config
    if config is None and cmd.default_config:  # `minitron run`: the embedded default
        config = str(Path(__file__).parent / cmd.default_config)
    cfg: Any = loader.load(cmd.schema, config, overrides, values)  # an instance of cmd.schema
    return name, cfg


def run(argv: Sequence[str], log: Callable[[str], None] = print):
    """Parse and run one command; returns the recipe's result."""
    quiet_megatron()
    name, cfg = parse(argv)
    cmd = COMMANDS[name]
    out = output_dir(cfg)
    if out is not None and cmd.replaces and getattr(cfg, "overwrite", False):
        from minitron.checkpoint.atomic import check_replace

        check_replace(Path(out), cmd.replaces)  # before any work
    recipe = importlib.import_module(cmd.recipe)
    if out is None or getattr(cfg, "dry_run", False) or os.environ.get("RANK", "0") != "0":
        return recipe.main(cfg, log)
    from minitron.checkpoint.lock import DirLock

    with DirLock(out):  # one writer per output directory
        return recipe.main(cfg, log)


def output_dir(cfg) -> Optional[str]:
    """The directory a command writes (``out``, or ``workdir`` for ``run``), if any."""
    for key in ("out", "workdir"):
        value = getattr(cfg, key, None)
        if isinstance(value, str) and value:
            return value
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except MinitronError as e:
        rank = os.environ.get("RANK")
        prefix = f"[rank {rank}] " if rank not in (None, "0") else ""
        print(f"{prefix}error: {e}", file=sys.stderr)
        return 2
    finally:
        if "minitron.parallel.runtime" in sys.modules:
            sys.modules["minitron.parallel.runtime"].shutdown()
    return 0
