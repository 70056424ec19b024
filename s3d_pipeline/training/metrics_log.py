"""Loss logging of a training run: a CSV file always, TensorBoard as well when it is installed."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Dict, Optional

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends one row per logged step to ``<folder>/<filename>`` (columns fixed by the first row; a resumed run
    appends to the same file) and mirrors scalars to TensorBoard under ``<folder>/tensorboard``."""

    def __init__(self, folder: Path, filename: str = "log.csv") -> None:
        self.path = folder / filename
        self.prefix = "" if filename == "log.csv" else Path(filename).stem + "/"
        self._columns: Optional[list] = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self._columns = next(csv.reader(f))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self._tensorboard = None
        self.backends = "csv" + (" + tensorboard" if self._tensorboard is not None else "")

    def log(self, step: int, values: Dict[str, float]) -> None:
        row = {"step": step, **values}
        if self._columns is None:
            self._columns = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self._columns)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([f"{row[c]:.6g}" if isinstance(row.get(c), float) else row.get(c, "") for c in self._columns])
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(self.prefix + name, value, step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_log(path: Path) -> list:
    """Rows of a ``log.csv`` as dicts of floats."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
