"""Metric logging: one JSON line per record (``metrics.jsonl``) and TensorBoard event files.

Only process 0 writes; the others get a writer that does nothing. TensorBoard files are written
with tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["MetricWriter", "read_jsonl"]


class MetricWriter:
    """Writes scalar metrics to ``DIR/metrics.jsonl`` and ``DIR/tensorboard``."""

    def __init__(self, directory: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(directory, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(directory, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(directory, "tensorboard"))

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


def read_jsonl(path: str) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (empty if there is none yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
