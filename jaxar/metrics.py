"""Metric logging: one JSON line per record (``metrics.jsonl``) and TensorBoard event files.

Only process 0 writes; the others get a writer that does nothing. TensorBoard files are written
with tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["MetricWriter", "read_jsonl", "truncate_jsonl"]


class MetricWriter:
    """Writes scalar metrics to ``DIR/metrics.jsonl`` and ``DIR/tensorboard``.

    ``purge_step``: a run resumed from step ``s`` passes ``s + 1``; TensorBoard then hides the
    events of earlier event files at that step and later (the killed attempt's records past the
    checkpoint), as :func:`truncate_jsonl` drops them from ``metrics.jsonl``.
    """

    def __init__(self, directory: str, enabled: bool = True, purge_step: int | None = None):
        self.enabled = enabled
        self.path = os.path.join(directory, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(directory, exist_ok=True)
            from tensorboardX import SummaryWriter

            # The event file is named by the second it was opened in, then this suffix: two
            # attempts in one second would otherwise write one file (the first one lost).
            self._tb = SummaryWriter(
                os.path.join(directory, "tensorboard"),
                purge_step=purge_step,
                filename_suffix=f".{time.time_ns()}",
            )

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def truncate_jsonl(path: str, last_step: int) -> int:
    """Drop the records of ``metrics.jsonl`` after ``last_step`` (a run resumed from that step
    logs them again); a half-written last line goes too. Returns how many records were
    dropped. The file is replaced atomically."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if int(record.get("step", 0)) <= last_step:
            kept.append(line)
    dropped = sum(1 for line in lines if line.strip()) - len(kept)
    if dropped:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped


def read_jsonl(path: str) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (empty if there is none yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
