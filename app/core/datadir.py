"""One owner per data directory: the lock `hereabouts serve` holds while it runs.

The lock is ``<data_dir>/hereabouts.lock``, held with ``flock(LOCK_EX)`` on an open descriptor
for the life of the process. The kernel releases it when the process ends in any way (``kill -9``
included), so a dead owner never blocks the next start: there is no stale lock to clean up, only
stale *contents*, which the next owner reads (to adopt a cluster a killed `serve` left running)
and then overwrites. The descriptor is opened close-on-exec, so neither uvicorn's worker processes
nor the PostgreSQL server inherit it (an inherited copy would keep the lock alive after `serve`
died). The file holds JSON: the owner's pid, the command, the URL it serves, when it started and
whether it owns the embedded cluster.

`flock` locks belong to the open file description and are advisory: every Hereabouts command that
needs the data directory to itself takes it the same way (`serve`, `db stop`, `db restore`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_NAME = "hereabouts.lock"

# Exit statuses of the CLI (README, docs/operations.md)
EXIT_ERROR = 1
EXIT_DATA_DIR_IN_USE = 3


class DataDirInUse(RuntimeError):
    """Another live process holds the data directory; `owner` is what it wrote in the lock."""

    def __init__(self, path: Path, owner: dict[str, Any]) -> None:
        self.path = path
        self.owner = owner
        super().__init__(describe_owner(owner))


def describe_owner(owner: dict[str, Any]) -> str:
    pid = owner.get("pid", "?")
    if owner.get("command") == "serve" and owner.get("url"):
        return f"Hereabouts is already running from this data directory (pid {pid}, {owner['url']})"
    command = owner.get("command") or "another Hereabouts command"
    return f"this data directory is in use by `hereabouts {command}` (pid {pid})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class DataDirLock:
    """The exclusive lock on one data directory (see the module docstring)."""

    data_dir: Path
    _fd: int | None = field(default=None, init=False, repr=False)
    # what the lock file held before this process took it (a previous, now dead, owner)
    previous: dict[str, Any] = field(default_factory=dict, init=False)
    info: dict[str, Any] = field(default_factory=dict, init=False)

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_NAME

    def _open(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # os.open descriptors are non-inheritable (PEP 446): children never hold the lock
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, command: str, url: str | None = None) -> None:
        """Take the lock or raise `DataDirInUse` (never waits)."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise DataDirInUse(self.path, read_owner(self.data_dir)) from None
        self._fd = fd
        self.previous = _parse(os.pread(fd, 65536, 0))
        self.info = {
            "pid": os.getpid(),
            "command": command,
            "url": url,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "owns_cluster": False,
        }
        self._write()

    def update(self, **changes: Any) -> None:
        self.info.update(changes)
        self._write()

    def _write(self) -> None:
        assert self._fd is not None
        data = (json.dumps(self.info) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self, *, clear: bool = True) -> None:
        """Give the lock up; `clear` empties the file (a clean exit leaves nothing to adopt)."""
        if self._fd is None:
            return
        if clear:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def wait_acquire(self, command: str, timeout_s: float) -> bool:
        """Try `acquire` until it succeeds (True) or `timeout_s` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.acquire(command)
                return True
            except DataDirInUse:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.2)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_owner(data_dir: Path, attempts: int = 10) -> dict[str, Any]:
    """What the current holder wrote (it may be a moment late: retried briefly while empty)."""
    path = data_dir / LOCK_NAME
    for _ in range(attempts):
        try:
            owner = _parse(path.read_bytes())
        except OSError:
            owner = {}
        if owner:
            return owner
        time.sleep(0.05)
    return {}


def stop_owner(
    data_dir: Path, owner: dict[str, Any], command: str, timeout_s: float = 60.0
) -> DataDirLock:
    """SIGTERM the process holding the data directory and wait until its lock is free.

    Returns the lock, now held by this process; raises `DataDirInUse` if the owner did not let
    go within `timeout_s`.
    """
    pid = owner.get("pid")
    if isinstance(pid, int) and pid > 0 and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    lock = DataDirLock(data_dir)
    if not lock.wait_acquire(command, timeout_s):
        raise DataDirInUse(lock.path, read_owner(data_dir))
    return lock


SERVE_PID_ENV = "HEREABOUTS_SERVE_PID"
_PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """In a uvicorn worker process of `serve`: get SIGTERM when `serve` itself dies.

    uvicorn's worker processes outlive a supervisor killed with `kill -9`: they kept answering
    on the port, the next `serve` could not bind it, and the orphans had no database once that
    `serve` stopped the cluster it adopted. The kernel's parent-death signal (Linux `prctl`)
    makes them shut down gracefully with their parent. `serve` exports its pid in
    HEREABOUTS_SERVE_PID; nothing happens in the process that has that pid, or without it.
    """
    import ctypes
    import ctypes.util
    import sys

    parent = os.environ.get(SERVE_PID_ENV)
    if not parent or not parent.isdigit() or int(parent) == os.getpid():
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # it died before the prctl call
        os.kill(os.getpid(), signal.SIGTERM)
