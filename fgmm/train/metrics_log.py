"""Training metrics as JSON lines (always), CSV and TensorBoard (optional).

``metrics.jsonl`` in the run folder gets one JSON object per line: ``"event": "train"`` lines every
``log_every_steps`` optimizer steps (``step``, ``epoch``, ``loss``, ``lr``, ``seconds``) and
``"event": "epoch"`` lines at the end of each epoch (``train_loss``, ``lr`` and the validation
metrics prefixed ``val_``). ``metrics.csv`` holds the epoch lines as a table. On resume, lines
written after the checkpoint's step are dropped so that the log matches the restored state.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fgmm.errors import require
from fgmm.train.checkpoint import atomic_write

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NaN/inf become ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _step_of(line: str) -> float:
    """The ``step`` of a log line; a line torn by a crash (unparsable) sorts after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class MetricsLogger:
    """Appends metric records to ``out_dir/metrics.jsonl`` (and CSV/TensorBoard when asked).

    Args:
        out_dir: run folder.
        enabled: ``False`` on non-main DDP ranks, making every method a no-op.
        csv_log: keep ``metrics.csv`` with one row per epoch record.
        tensorboard: mirror numeric values to TensorBoard in ``out_dir/tensorboard``.
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True, csv_log: bool = False,
                 tensorboard: bool = False):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.csv_log = csv_log
        self.path = self.out_dir / JSONL_NAME
        self._handle: io.TextIOWrapper | None = None
        self._writer = None
        if enabled and tensorboard:
            require("tensorboard", "tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def start(self, resume_step: int | None) -> None:
        """Open the log; ``resume_step=None`` starts a fresh file, otherwise later lines are dropped."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if _step_of(line) <= resume_step]
            atomic_write(self.path, lambda h: h.write("".join(f"{line}\n" for line in kept).encode()))
        self._handle = self.path.open("a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (a flat dict of JSON scalars; must hold ``step``)."""
        if not self.enabled:
            return
        if self._handle is None:
            self.start(resume_step=None)
        clean = {k: _clean(v) for k, v in record.items()}
        self._handle.write(json.dumps(clean) + "\n")
        self._handle.flush()
        if self._writer is not None:
            prefix = record.get("event", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
                    self._writer.add_scalar(f"{prefix}/{key}", value, global_step=record["step"])

    def write_table(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` (atomically) from the epoch rows, when CSV logging is on."""
        if not (self.enabled and self.csv_log and rows):
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.out_dir / CSV_NAME, lambda h: h.write(buffer.getvalue().encode()))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
