"""One writer per run folder: ``RUN/.lock`` names the process that writes the run.

``RunLock(folder)`` (a context manager) creates the lock file atomically (``O_CREAT | O_EXCL``: of two
processes starting together exactly one succeeds) holding ``{"pid", "host", "started"}``, and removes it when
the run ends, however it ends. A second writer is refused with a ``ConfigError`` naming the process that holds
the lock. A lock left by a process that no longer runs (killed, or its machine rebooted) is recognised by its
PID on this host and taken over, with a warning saying so; a lock from another host cannot be checked from here,
so it is refused, and the message says how to remove it if that process is gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from mdnet_utils.errors import ConfigError

__all__ = ["LOCK", "RunLock", "process_alive"]

LOCK = ".lock"
log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


class RunLock:
    """The lock of one run folder (see the module docstring); the folder is created if it does not exist."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.held = False

    def _holder(self) -> dict | None:
        """The lock's content, or None when it cannot be read as one of ours."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("host"), str):
            return None
        return data

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):  # a stale lock is removed and the atomic creation tried again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise ConfigError("out", str(self.folder), "is being locked by other processes as this one starts: "
                                                   "start one writer at a time.")

    def _take_over_if_stale(self) -> None:
        holder = self._holder()
        if holder is None:
            try:  # an unreadable lock may be one being written this very moment: give it a second
                young = time.time() - self.path.stat().st_mtime < 2
            except FileNotFoundError:
                return
            if young:
                time.sleep(1)
                holder = self._holder()
        if holder is not None:
            pid, host = holder["pid"], holder["host"]
            if host != socket.gethostname():
                raise ConfigError("out", str(self.folder), f"is locked by process {pid} on host {host} ({self.path}): "
                                                           "wait for it to end; if it is gone, delete that file.")
            if process_alive(pid):
                raise ConfigError("out", str(self.folder), f"is being written by process {pid} (its lock "
                                                           f"{self.path}): wait for it to end, or choose another "
                                                           "`out`.")
            log.warning("%s: took over the stale lock of process %d, which no longer runs.", self.folder, pid)
        else:
            log.warning("%s: took over an unreadable lock file (%s).", self.folder, self.path)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.held = False
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
