"""What ``minitron run`` (and ``minitron search``) set in the stage configs they build: the
values shown for the owned fields of their sections (``config/sections.py``), and the
placeholders a section is checked with at load."""

from __future__ import annotations

import dataclasses

from minitron.config.schema import DataConfig
from minitron.config.train import TrainingBase

RUN_TRAINING = {f.name: "the run's top-level value" for f in dataclasses.fields(TrainingBase)} | {
    "dry_run": "false (the run's dry_run plans every stage)",
    "progress": "false",
}
LAYOUT = {"tp": "the run's", "pp": "the run's", "dtype": "the run's"}
PLACEHOLDER_DATA = DataConfig(paths=["<workdir>/data"])
TRAINED = {"model": "<checkpoint>", "out": "<workdir>/<stage>", "data": PLACEHOLDER_DATA}
