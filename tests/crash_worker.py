"""``jaxar`` with a crash injected inside a checkpoint save (tests/test_reliability.py); not a
test module itself.

Usage: JAXAR_CRASH=WHERE@STEP python crash_worker.py COMMAND ARGS...   (as for ``jaxar``), where
WHERE is one of
  orbax    SIGKILL right after the latest-checkpoint save of STEP has started (orbax writes it
           in the background: the process dies while the step is being written);
  best     SIGKILL right after the best-checkpoint save of STEP has started (the latest one of
           that step is under way too);
  seal     SIGKILL just before the checksum of STEP is written (the step is complete, unsealed);
  sigterm  SIGTERM to itself as the save of STEP begins (the run must finish that save, stop at
           the step boundary and exit 75).
"""

import os
import signal
import sys

from jaxar import checkpointing
from jaxar.cli import main

WHERE, STEP = os.environ["JAXAR_CRASH"].split("@")
STEP = int(STEP)


def _kill(sig=signal.SIGKILL):
    sys.stderr.flush()
    os.kill(os.getpid(), sig)


def _after(method, die):
    def wrapped(*args, **kwargs):
        out = method(*args, **kwargs)
        die()
        return out

    return wrapped


_save = checkpointing.Checkpointer.save


_done = []


def save(self, step, state, metrics=None):
    if step == STEP and not _done:  # once: the stop saves that step again
        _done.append(step)
        if WHERE == "orbax":
            self._latest.save = _after(self._latest.save, _kill)
        elif WHERE == "best":
            self._best.save = _after(self._best.save, _kill)
        elif WHERE == "sigterm":
            _kill(signal.SIGTERM)
    return _save(self, step, state, metrics)


_seal = checkpointing.seal_step


def seal_step(step_dir):
    if WHERE == "seal" and os.path.basename(step_dir) == str(STEP):
        _kill()
    return _seal(step_dir)


checkpointing.Checkpointer.save = save
checkpointing.seal_step = seal_step

if __name__ == "__main__":
    main(sys.argv)
