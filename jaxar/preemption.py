"""Ending a run cleanly on SIGTERM / SIGINT: stop at the next step boundary, save, exit 75.

``PreemptionGuard`` installs handlers for the signals while it is entered. The first signal only
sets a flag; the training loop calls ``guard.should_stop(step)`` at each step boundary and, when
it says so, saves a checkpoint of that step and exits with :data:`PREEMPTED_EXIT_CODE`
(``EX_TEMPFAIL``: "try again"; a job scheduler can requeue on it). A second signal exits at once
(status 128 + signal number) without saving. Leaving the guard restores the previous handlers.

On a multi-host job every process must stop at the same step, or the collective steps and the
checkpoint barriers would hang: every ``sync_every`` steps each process calls ``should_stop``
at the same step, and the processes all-gather their flags (any one set stops all); and at
every step they ask JAX's preemption sync point (``multihost_utils.reached_preemption_sync_point``:
the platform's own notice, e.g. a Cloud TPU maintenance event, which the runtime agrees on across
hosts) where the distributed runtime offers one (``jax_enable_preemption_service``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "PreemptionGuard"]

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): preempted, checkpoint saved; run it again


class Preempted(Exception):
    """The run stopped on a signal after saving a checkpoint of ``step`` (one-line message;
    the CLI prints it and exits with :data:`PREEMPTED_EXIT_CODE`)."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, signal_name: str, step: int, workdir: str):
        super().__init__(
            f"{signal_name or 'preemption notice'}: stopped at step {step} with a checkpoint "
            f"of it in {workdir}; run the same command again to continue"
        )
        self.step = step


class PreemptionGuard:
    """Signal handlers that turn SIGTERM / SIGINT into a stop at the next step boundary.

    Args:
      signals: the signals to catch.
      sync_every: on a multi-host job, how many steps apart the processes compare their flags
        (``should_stop`` answers False between those steps). One process: every step.
      process_count: the number of processes (default: ``jax.process_count()``).
    """

    def __init__(
        self,
        signals=(signal.SIGTERM, signal.SIGINT),
        sync_every: int = 10,
        process_count: int | None = None,
    ):
        if int(sync_every) != sync_every or sync_every < 1:
            raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
        self.signals = tuple(signals)
        self.sync_every = int(sync_every)
        self._process_count = process_count
        self.signum: int | None = None  # the first signal received
        self._previous: dict = {}
        self._platform_sync = True  # JAX's preemption sync point, until it proves unavailable

    @property
    def requested(self) -> bool:
        """Whether this process has received a signal."""
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return "" if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        name = signal.Signals(signum).name
        sys.stderr.write(f"jaxar: second {name}: exiting at once, without a checkpoint\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    def __enter__(self) -> PreemptionGuard:
        # Handlers can only be installed from the main thread; elsewhere the guard is inert.
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def should_stop(self, step: int) -> bool:
        """Whether to stop after ``step`` (call at every step boundary, on every process)."""
        count = self._process_count
        if count is None:
            count = jax.process_count()
        if count == 1:
            return self.requested
        # The platform's notice is agreed on by the runtime itself; it must be asked every step.
        if self._platform_sync:
            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    return True
            except RuntimeError:  # no preemption service in this runtime
                self._platform_sync = False
        if step % self.sync_every:
            return False
        flags = multihost_utils.process_allgather(np.asarray(int(self.requested), np.int32))
        return bool(np.max(flags))
