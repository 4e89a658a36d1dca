"""Checkpoints through orbax ``CheckpointManager``: the latest N, plus the best by a metric.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed mid-save leaves no checkpoint that cannot be restored: the half-written one is ignored.

Each finished checkpoint is sealed: once orbax has written it, process 0 records the size and
sha256 of every file in the step's folder in ``jaxar_checksum.json`` beside orbax's files.
Restoring verifies them first, so a truncated, zeroed, deleted or bit-flipped file is found
before any of it is used. A step without that file (written before checksums, or killed between
orbax's rename and the seal) has no checksums to check: every value of its OCDBT stores is read
once first (:func:`unreadable_values`), so a truncated or missing data file is found before orbax
starts a restore that would fail halfway (and leave its reads in flight on a closed event loop).

``restore(target, "latest")`` takes the newest step that verifies and restores, logging a warning
that names every newer step it skipped and why; an explicitly requested step (or ``"best"``) that
is damaged raises :class:`CheckpointError` in one line naming the step. Damaged checkpoints are
never deleted; one that a resumed run reaches again is moved to ``checkpoints.damaged/`` before
the new save (``restore(..., move_skipped=True)`` moves every damaged step newer than the
restored one there at once). Folders whose names are not step numbers are ignored; an empty
numeric folder is skipped like a damaged step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = [
    "CHECKSUM_FILE",
    "CheckpointError",
    "Checkpointer",
    "file_checksums",
    "unreadable_values",
    "verify_step",
]

log = logging.getLogger("jaxar")

CHECKSUM_FILE = "jaxar_checksum.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged or incomplete (the message is one line)."""


def file_checksums(step_dir: str) -> dict[str, list]:
    """``{relative path: [size in bytes, sha256 hex]}`` of every file under ``step_dir``
    except the checksum file itself."""
    sums = {}
    for root, dirs, files in os.walk(step_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel == CHECKSUM_FILE:
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            sums[rel] = [os.path.getsize(path), digest.hexdigest()]
    return sums


def seal_step(step_dir: str) -> None:
    """Write ``step_dir``'s checksum file (atomically: a temporary file, then a rename)."""
    path = os.path.join(step_dir, CHECKSUM_FILE)
    tmp = path + ".tmp"
    sums = file_checksums(step_dir)  # before the temporary file exists
    with open(tmp, "w") as f:
        json.dump({"algorithm": "sha256", "files": sums}, f, sort_keys=True)
    os.replace(tmp, path)


def verify_step(step_dir: str) -> tuple[bool, str | None]:
    """``(sealed, problem)``: whether ``step_dir`` has a checksum file, and what is wrong with
    it (None when nothing is found wrong; an unsealed step is only checked for being empty or
    lacking orbax's metadata)."""
    if not os.path.isdir(step_dir):
        return False, "is not a folder"
    if not any(files for _, _, files in os.walk(step_dir)):
        return False, "is an empty folder"
    path = os.path.join(step_dir, CHECKSUM_FILE)
    if not os.path.exists(path):
        if not os.path.exists(os.path.join(step_dir, "_CHECKPOINT_METADATA")):
            return False, "is incomplete (no orbax _CHECKPOINT_METADATA and no checksum)"
        return False, None
    try:
        with open(path) as f:
            expected = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return True, f"has an unreadable {CHECKSUM_FILE} ({type(e).__name__})"
    actual = file_checksums(step_dir)
    for rel, (size, digest) in sorted(expected.items()):
        if rel not in actual:
            return True, f"misses its file {rel}"
        if actual[rel][0] != size:
            return True, f"has {rel} of {actual[rel][0]} bytes, {size} when saved (truncated?)"
        if actual[rel][1] != digest:
            return True, f"has {rel} whose sha256 differs from the one saved (damaged bytes)"
    extra = sorted(set(actual) - set(expected))
    if extra:
        return True, f"has files that were not saved with it: {', '.join(extra[:3])}"
    return True, None


def unreadable_values(step_dir: str) -> str | None:
    """What stops the values of ``step_dir``'s OCDBT stores (each item folder with a
    ``manifest.ocdbt``, orbax's default format) from being read, or None when every value
    reads. Each store is listed and every value read through tensorstore's own futures, all
    waited for here: the check reads what a restore would, and leaves nothing in flight."""
    import tensorstore as ts

    for item in sorted(os.listdir(step_dir)):
        folder = os.path.join(step_dir, item)
        if not os.path.isfile(os.path.join(folder, "manifest.ocdbt")):
            continue
        spec = {"driver": "ocdbt", "base": "file://" + os.path.abspath(folder) + "/"}
        try:
            store = ts.KvStore.open(spec).result()
            reads = [store.read(key) for key in store.list().result()]
        except Exception as e:  # an unreadable manifest or tree
            return f"has an unreadable value in {item}/ ({_first_line(e)})"
        problem = None
        for read in reads:  # wait for every read, failed or not
            try:
                read.result()
            except Exception as e:
                problem = problem or f"has an unreadable value in {item}/ ({_first_line(e)})"
        if problem:
            return problem
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 160 else line[:157] + "..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _is_tree_mismatch(e: BaseException) -> bool:
    """Whether orbax refused the restore because the target's tree differs from the saved one
    (the run's fault, not the checkpoint's)."""
    return isinstance(e, ValueError) and "tree structures do not match" in str(e)


class Checkpointer:
    """Latest-N checkpoints in ``DIR/checkpoints``, the best one in ``DIR/best``.

    Args:
      directory: the run's workdir.
      keep: how many of the latest checkpoints to keep.
      best_metric: the metric (lower is better) that picks the best checkpoint.
    """

    def __init__(self, directory: str, keep: int = 3, best_metric: str = "test/bits_per_dim"):
        directory = os.path.abspath(directory)
        self.directory = directory
        self.best_metric = best_metric
        self._unsealed: list[tuple[Any, int]] = []
        self._damaged: set[int] = set()
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
        """The newest step folder in ``checkpoints/`` (restorable or not)."""
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.best_step()

    def all_steps(self) -> list[int]:
        return sorted(self._latest.all_steps())

    @staticmethod
    def _step_dir(manager, step: int) -> str:
        return os.path.join(str(manager.directory), str(step))

    def save(self, step: int, state: Any, metrics: dict | None = None) -> None:
        """Save ``state`` at ``step``; with metrics holding the best metric, offer it as best.

        The previous save is waited for and sealed first (orbax would wait for it anyway).
        """
        self.wait()
        if step in self._damaged and step in self._latest.all_steps():
            self._move_aside(step)  # restored without move_skipped, then saved over
        if step not in self._latest.all_steps():
            self._latest.save(step, args=ocp.args.StandardSave(state))
            self._unsealed.append((self._latest, step))
        if metrics is not None and self.best_metric in metrics:
            if step not in self._best.all_steps():
                self._best.save(
                    step,
                    args=ocp.args.StandardSave(state),
                    metrics={self.best_metric: float(metrics[self.best_metric])},
                )
                self._unsealed.append((self._best, step))

    def _move_aside(self, step: int) -> None:
        """Keep a damaged step (never deleted) out of the way of new saves."""
        if jax.process_index() == 0:
            aside = os.path.join(self.directory, "checkpoints.damaged")
            os.makedirs(aside, exist_ok=True)
            dest = os.path.join(aside, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self._step_dir(self._latest, step), dest)
            log.warning("moved the damaged checkpoint step %d to %s", step, dest)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxar_move_aside_{step}")
        self._latest.reload()
        self._damaged.discard(step)

    def _verify(self, manager, step: int) -> tuple[bool, str | None]:
        return verify_step(self._step_dir(manager, step))

    def _restore_step(self, manager, target: Any, step: int) -> tuple[Any, str | None]:
        """``(state, None)``, or ``(None, problem)`` for a damaged step. A sealed step that
        verifies but does not restore, or any step whose tree differs from ``target``'s, raises
        orbax's error (the target is at fault, not the checkpoint)."""
        sealed, problem = self._verify(manager, step)
        if problem is None and not sealed:
            problem = unreadable_values(self._step_dir(manager, step))
        if problem is not None:
            return None, problem
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract)), None
        except Exception as e:  # any failure of an unsealed step is damage
            if sealed or _is_tree_mismatch(e):
                raise
            return None, f"does not restore ({_first_line(e)})"

    def restore(
        self, target: Any, step: int | str | None = None, *, move_skipped: bool = False
    ) -> tuple[Any, int]:
        """Restore into the structure (and shardings) of ``target``.

        ``step`` is an int, ``"latest"`` (or None) or ``"best"``. Returns ``(state, step)``.
        ``"latest"`` falls back to older steps past damaged ones (warning about each); a damaged
        requested step raises :class:`CheckpointError`. ``move_skipped`` (a run about to
        continue from the restored step) moves the damaged newer steps to
        ``checkpoints.damaged/``: kept, but no longer in the way of the steps to be saved
        (orbax saves no step below its newest one).
        """
        if step in (None, "latest"):
            state, step = self._restore_latest(target)
            if move_skipped:
                for newer in sorted(s for s in self._damaged if s > step):
                    self._move_aside(newer)
            return state, step
        if step == "best":
            manager, step = self._best, self._best.best_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {manager.directory}")
        else:
            manager, step = self._latest, int(step)
            if step not in self._latest.all_steps():
                raise FileNotFoundError(
                    f"no checkpoint at step {step}; available: {sorted(self._latest.all_steps())}"
                )
        state, problem = self._restore_step(manager, target, step)
        if problem is not None:
            raise CheckpointError(
                f"checkpoint step {step} in {manager.directory} {problem}; not restored"
            )
        return state, step

    def _restore_latest(self, target: Any) -> tuple[Any, int]:
        steps = sorted(self._latest.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self._latest.directory}")
        skipped = []
        for step in steps:
            state, problem = self._restore_step(self._latest, target, step)
            if problem is None:
                return state, step
            self._damaged.add(step)
            skipped.append(f"step {step} {problem}")
            log.warning(
                "skipping checkpoint step %d in %s: it %s (kept, not deleted)",
                step,
                self._latest.directory,
                problem,
            )
        raise CheckpointError(
            f"no checkpoint in {self._latest.directory} restores: {'; '.join(skipped)}"
        )

    def wait(self) -> None:
        """Wait for async saves to finish, then seal them (process 0 writes the checksums)."""
        self._latest.wait_until_finished()
        self._best.wait_until_finished()
        pending, self._unsealed = self._unsealed, []
        if jax.process_index() != 0:
            return
        for manager, step in pending:
            step_dir = self._step_dir(manager, step)
            if os.path.isdir(step_dir):  # max_to_keep may already have removed it
                seal_step(step_dir)

    def close(self) -> None:
        self.wait()
        self._latest.close()
        self._best.close()
