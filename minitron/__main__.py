"""``python -m minitron <command> ...`` (and ``torchrun ... -m minitron <command> ...``)."""

import sys

from minitron.cli import main

if __name__ == "__main__":  # dist_checkpointing's writer spawns processes: keep this guard
    sys.exit(main())
