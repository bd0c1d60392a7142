"""The experiment manifest: config, versions, git commit, and every stage's status.

    <workdir>/manifest.json
      config        the resolved run config
      versions      python, torch, megatron-core, transformers, minitron; the git commit
      stages        {name: {status, hash, started, finished, seconds, outputs, figures}}

A stage's ``hash`` covers its own config section and the hash of the stage before it,
so changing a stage's settings changes its hash and every later one: those stages
run again, earlier ones are kept. Written atomically after every change.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Optional

from minitron.checkpoint import atomic


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def git_commit() -> Optional[str]:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def versions() -> dict:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "megatron-core", "transformers", "minitron"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    out["git_commit"] = git_commit()
    return out


def stage_hash(section: Any, previous: str) -> str:
    blob = json.dumps(section, sort_keys=True, default=str) + previous
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
    def __init__(self, workdir: Path, config: dict):
        self.path = Path(workdir) / "manifest.json"
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())
        else:
            self.data = {"created": now(), "stages": {}}
        self.data["config"] = config
        self.data["versions"] = versions()

    def stage(self, name: str) -> dict:
        return self.data["stages"].get(name, {})

    def is_done(self, name: str, h: str) -> bool:
        s = self.stage(name)
        return s.get("status") == "done" and s.get("hash") == h

    def was_started(self, name: str, h: str) -> bool:
        """Started (or finished) with these exact settings: its outputs can be resumed."""
        s = self.stage(name)
        return s.get("hash") == h and s.get("status") in ("running", "done", "failed")

    def update(self, name: str, **fields) -> None:
        self.data["stages"].setdefault(name, {}).update(fields)
        self.save()

    def save(self) -> None:
        atomic.write_text(self.path, json.dumps(self.data, indent=2, default=str))
