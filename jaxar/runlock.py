"""One run per workdir: a lock file held by a live process.

``RunLock(workdir)`` writes ``WORKDIR/run.lock`` (pid, host, start time) with ``O_CREAT |
O_EXCL``, so of two runs started together exactly one wins. The file is removed when the lock is
released (``release()``, leaving the ``with`` block, or at interpreter exit); a lock left by a
process that is gone (same host, pid no longer running, or a pid reused by a process started
after the lock) is taken over with a warning. A lock held by a live process, or by one on another
host (which cannot be checked), makes ``acquire`` raise :class:`RunLockedError` naming the
holder. On a multi-host job only process 0 takes the lock (``enabled=False`` elsewhere).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

log = logging.getLogger("jaxar")

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """The workdir is in use by another live run (the message is one line)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch; Linux only, else None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class RunLock:
    """The lock on ``workdir``; use as a context manager or call ``acquire``/``release``."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self.enabled = enabled
        self.held = False

    def _holder(self) -> dict | None:
        """The lock file's contents; None if there is none (an unreadable one counts as
        ``{}``: half-written by a process that died at once)."""
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:
            return True
        if holder.get("host") != socket.gethostname():
            return False
        pid = int(holder.get("pid", -1))
        if pid == os.getpid() and not self.held:
            return False  # this process holds it through another RunLock object
        if pid <= 0 or not _pid_alive(pid):
            return True
        started = _process_start(pid)
        # A live process with that pid that started after the lock was written is another one.
        return started is not None and started > float(holder.get("time", 0)) + 1.0

    def acquire(self) -> RunLock:
        if not self.enabled or self.held:
            return self
        me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile
                if not self._stale(holder):
                    since = time.strftime(
                        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("time", 0)))
                    )
                    raise RunLockedError(
                        f"{os.path.dirname(self.path)} is in use by another run (pid "
                        f"{holder.get('pid')} on {holder.get('host')}, started {since}); "
                        f"wait for it to finish or stop it (if it is gone, delete {self.path})"
                    ) from None
                if self._holder() != holder:
                    continue  # someone else took it over meanwhile
                log.warning("taking over %s from a run that is gone: %s", self.path, holder)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise RunLockedError(f"could not take {self.path}: other runs keep taking it")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
