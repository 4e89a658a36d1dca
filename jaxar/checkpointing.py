"""Checkpoints through orbax ``CheckpointManager``: the latest N, plus the best by a metric.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed mid-save leaves no checkpoint that cannot be restored: the half-written one is ignored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


class Checkpointer:
    """Latest-N checkpoints in ``DIR/checkpoints``, the best one in ``DIR/best``.

    Args:
      directory: the run's workdir.
      keep: how many of the latest checkpoints to keep.
      best_metric: the metric (lower is better) that picks the best checkpoint.
    """

    def __init__(self, directory: str, keep: int = 3, best_metric: str = "test/bits_per_dim"):
        directory = os.path.abspath(directory)
        self.best_metric = best_metric
        # The two managers may finish async saves of the same step at the same time; on
        # several hosts their barriers must not share names (orbax's barrier keys are fixed
        # strings, so two concurrent saves would otherwise meet at one barrier and fail).
        barriers = lambda name: ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)
        self._latest = ocp.CheckpointManager(
            os.path.join(directory, "checkpoints"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, multiprocessing_options=barriers("latest")
            ),
        )
        self._best = ocp.CheckpointManager(
            os.path.join(directory, "best"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda m: m[best_metric],
                best_mode="min",
                create=True,
                multiprocessing_options=barriers("best"),
            ),
        )

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.best_step()

    def save(self, step: int, state: Any, metrics: dict | None = None) -> None:
        """Save ``state`` at ``step``; with metrics holding the best metric, offer it as best."""
        if step not in self._latest.all_steps():
            self._latest.save(step, args=ocp.args.StandardSave(state))
        if metrics is not None and self.best_metric in metrics:
            if step not in self._best.all_steps():
                self._best.save(
                    step,
                    args=ocp.args.StandardSave(state),
                    metrics={self.best_metric: float(metrics[self.best_metric])},
                )

    def restore(self, target: Any, step: int | str | None = None) -> tuple[Any, int]:
        """Restore into the structure (and shardings) of ``target``.

        ``step`` is an int, ``"latest"`` (or None) or ``"best"``. Returns ``(state, step)``.
        """
        manager = self._best if step == "best" else self._latest
        if step in (None, "latest", "best"):
            step = manager.best_step() if manager is self._best else manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {manager.directory}")
        elif int(step) not in self._latest.all_steps():
            raise FileNotFoundError(
                f"no checkpoint at step {step}; available: {sorted(self._latest.all_steps())}"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        state = manager.restore(int(step), args=ocp.args.StandardRestore(abstract))
        return state, int(step)

    def wait(self) -> None:
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        self._latest.close()
        self._best.close()
