"""One run per work folder: an exclusive lock on `<workdir>/.polyalign.lock`.

The lock is a kernel lock (flock) on that file, so it is released when its holder exits or is killed; the
file also holds the holder's pid, host and start time, for the message a second run prints. A file left with
a pid by a killed run is a stale lock: the next run gets the kernel lock at once, says so and takes over. The
file is never deleted (deleting a locked file would let two runs lock two different files); a clean exit
empties it. flock is local to one machine: two hosts sharing a work folder over NFS are not covered.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import LockedError, WriteError
from ..io import write_failure

LOCK_FILE = ".polyalign.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkdirLock:
    """`with WorkdirLock(root):` holds the work folder's lock; a held lock raises LockedError naming the holder's
    pid, or, with `wait=True`, blocks until the holder is done."""

    def __init__(self, root: str | Path, *, wait: bool = False, log: Callable[[str], None] = print,
                 poll_s: float = 0.5):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self.wait = wait
        self.log = log
        self.poll_s = poll_s
        self.fd: int | None = None

    def holder(self) -> dict[str, object]:
        """What the lock file says about its holder ({} when empty or unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> WorkdirLock:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            failure = write_failure(exc)
            if failure is None:
                raise
            raise WriteError(self.path, failure[0], note="the run needs to write its lock there") from None
        try:
            self._acquire(fd)
            previous = self.holder()
            if previous.get("pid") and previous.get("host") == socket.gethostname() \
                    and previous["pid"] != os.getpid():
                state = "not running" if not pid_alive(int(previous["pid"])) else "running, but it holds no lock"
                self.log(f"[lock] {self.path}: took over a stale lock left by pid {previous['pid']} ({state})")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        except BaseException as exc:
            os.close(fd)
            failure = write_failure(exc) if isinstance(exc, OSError) else None
            if failure is not None:
                raise WriteError(self.path, failure[0], note="the run needs to write its lock there") from None
            raise
        self.fd = fd
        return self

    def _acquire(self, fd: int) -> None:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            holder = self.holder()
            who = (f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
                   if holder.get("pid") else "a process that has not written its pid yet")
            if not self.wait:
                raise LockedError(f"work folder {self.root} is in use by another polyalign run ({who}); wait for it "
                                  f"to finish, pass --wait to queue behind it, or use another workdir")
            if not told:
                self.log(f"[lock] waiting for work folder {self.root}: in use by {who}")
                told = True
            time.sleep(self.poll_s)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError as error:  # a full disk may refuse even this; the kernel lock goes with the fd anyway
            if write_failure(error) is None:
                raise
        finally:
            os.close(self.fd)
            self.fd = None
