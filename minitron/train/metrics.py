"""Training metrics to the console (a progress bar), a CSV file and TensorBoard.

Only global rank 0 writes. On resume the CSV keeps the rows up to the resumed
step, so the file always holds one uninterrupted curve.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional


def student_tags(names: list[str]) -> list[str]:
    """The suffix of each student's metric columns (``kd_<name>``, ``val_loss_<name>``): none
    for a single student, ``_<name>`` for each of several."""
    return [""] if len(names) == 1 else [f"_{n}" for n in names]


class MetricsLogger:
    def __init__(
        self,
        run: Path,
        total_steps: int,
        start_step: int,
        enabled: bool,
        tensorboard: bool = True,
        progress: bool = True,
        desc: str = "train",
    ):
        self.enabled = enabled
        self.path = Path(run) / "metrics.csv"
        self.bar = None
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():  # drop rows past the step we resume from
            rows = list(csv.DictReader(self.path.open()))
            keep = [r for r in rows if int(r["step"]) <= start_step]
            if keep:
                with self.path.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(keep[0]))
                    w.writeheader()
                    w.writerows(keep)
            else:
                self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run) / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV and console only
                self.tb = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True
            )

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, **values}  # full precision: resumed curves are compared exactly
        new = not self.path.is_file()
        fields = list(row)
        if not new:
            with self.path.open() as f:
                fields = next(csv.reader(f))
            for k in row:
                if k not in fields:  # a new column (e.g. the first validation): rewrite the file
                    rows = list(csv.DictReader(self.path.open()))
                    fields = fields + [k for k in row if k not in fields]
                    with self.path.open("w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=fields)
                        w.writeheader()
                        w.writerows(rows)
                    break
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            shown = {
                k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "kd", "lr", "grad_norm")
            }
            self.bar.set_postfix(shown)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self, final: Optional[str] = None) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if final and self.enabled:
            print(final)
