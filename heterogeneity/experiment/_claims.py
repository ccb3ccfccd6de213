"""Claims: a sweep point runs in at most one process, across processes and hosts sharing a directory.

No scheduler and no server: N processes (job-array tasks, hosts, or two terminals) can point
``heterogeneity sweep`` at one output directory. Each point is claimed before it runs by
creating ``OUT/locks/<run_id>.lock`` with ``O_CREAT | O_EXCL``, which succeeds for exactly one
process (atomic on local POSIX filesystems and on NFSv3+). The lock holds JSON: ``pid``,
``host``, ``started_at`` (UTC), ``proc_start`` (the holder's start time from ``/proc``, to
tell a reused pid apart) and a random ``token``.

Protocol, as `heterogeneity.experiment.run_sweep` uses it:

1. skip points whose result file is done; claim the others one by one (a point held by
   another process is left to it);
2. after claiming, re-read the result file: a process that finished the point between our
   scan and our claim wrote its result *before* releasing the lock, so this check sees it and
   the point is released untouched — hence no point runs twice;
3. while a point runs, a daemon thread refreshes the lock's mtime every ``heartbeat`` seconds;
4. the result file is written atomically, then the lock is removed.

Stale locks (a holder killed by ``kill -9``, OOM or a lost host) are recovered: a lock is
stale when its holder is on this host and its pid is gone (or now belongs to a process with
another start time, or is a zombie), or when its mtime — the last heartbeat — is older than
``timeout`` seconds (any host; this is the only test possible for a holder on another host).
Breaking a stale lock is itself serialised: the breaker creates ``<run_id>.lock.break`` with
``O_EXCL``, re-checks that the lock is still the very file judged stale (same inode), renames
it aside, checks the inode again (restoring the lock if it raced with a fresh claim), deletes
it and removes the breaker; then it claims the point normally. A breaker left by a process
killed mid-break is removed once older than ``timeout``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = ["Claims", "read_lock", "lock_is_stale"]

HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else fields[19].decode()  # a zombie has no start time for us
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, proc_start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except (OverflowError, ValueError):
        return False
    if os.path.isdir("/proc"):
        now = _proc_start(pid)
        if now is None:  # a zombie, or gone between the two calls
            return False
        if proc_start is not None and now != proc_start:
            return False  # the pid was reused by a newer process
    return True


def read_lock(path: str | os.PathLike) -> tuple[dict | None, os.stat_result | None]:
    """The lock's JSON (None while its writer has not written it, or if unreadable) and its stat (None if gone)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, None
    except OSError:
        return None, None
    try:
        info = json.loads(data.decode("utf-8"))
        return (info if isinstance(info, dict) else None), st
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, st


def lock_is_stale(info: dict | None, st: os.stat_result, *, timeout: float, now: float | None = None) -> str | None:
    """Why the lock is stale (a dead holder on this host, or no heartbeat for ``timeout`` s), or None if live."""
    age = (time.time() if now is None else now) - st.st_mtime
    if age > timeout:
        return f"no heartbeat for {age:.0f} s (timeout {timeout:g} s)"
    if info is not None and info.get("host") == HOST and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"], info.get("proc_start")):
            return f"its process {info['pid']} on {HOST} is gone"
    return None


class Claims:
    """The locks this process holds in one directory (see the module docstring); a context manager.

    Args:
      lock_dir: where the ``<run_id>.lock`` files live (created).
      timeout: seconds without a heartbeat after which any lock counts as stale.
      heartbeat: seconds between mtime refreshes of held locks (default ``min(30, timeout/4)``).
      log: called with one line when a stale lock is broken or a held lock goes missing.
    """

    def __init__(self, lock_dir: str | os.PathLike, *, timeout: float = 900.0, heartbeat: float | None = None,
                 log: Callable[[str], Any] | None = None):
        if not timeout > 0:
            raise ValueError(f"lock timeout must be > 0 seconds, got {timeout!r}")
        self.dir = Path(lock_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timeout = float(timeout)
        self.heartbeat = float(heartbeat) if heartbeat is not None else min(30.0, self.timeout / 4)
        self.log = log
        self.token = uuid.uuid4().hex
        self._held: dict[str, Path] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, rid: str) -> Path:
        return self.dir / f"{rid}.lock"

    def _info(self) -> dict:
        now = _dt.datetime.now(_dt.timezone.utc)
        return {"pid": os.getpid(), "host": HOST, "started_at": now.isoformat(timespec="seconds"),
                "started_unix": now.timestamp(), "proc_start": _proc_start(os.getpid()), "token": self.token}

    def claim(self, rid: str) -> bool:
        """Create ``<rid>.lock`` exclusively (breaking it first if stale); True if this process now holds it."""
        path = self.path(rid)
        for attempt in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if attempt == 0 and self._break_if_stale(path):
                    continue
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._info(), f)
                f.flush()
                os.fsync(f.fileno())
            with self._mutex:
                self._held[rid] = path
            self._start_heartbeat()
            return True
        return False

    def release(self, rid: str) -> None:
        """Remove our lock on ``rid`` (after its result file is written)."""
        with self._mutex:
            path = self._held.pop(rid, None)
        if path is None:
            return
        info, _ = read_lock(path)
        if info is not None and info.get("token") != self.token:
            return  # broken as stale while we ran (e.g. suspended past the timeout): not ours any more
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def held(self) -> list[str]:
        with self._mutex:
            return list(self._held)

    def close(self) -> None:
        """Release every lock still held and stop the heartbeat."""
        for rid in self.held():
            self.release(rid)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _break_if_stale(self, path: Path) -> bool:
        info, st = read_lock(path)
        if st is None:
            return True  # released meanwhile: try again
        why = lock_is_stale(info, st, timeout=self.timeout)
        if why is None:
            return False
        breaker = path.with_name(path.name + ".break")
        try:
            os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            try:
                if time.time() - os.stat(breaker).st_mtime > self.timeout:
                    os.unlink(breaker)  # its breaker died mid-break
            except FileNotFoundError:
                pass
            return False
        try:
            _, again = read_lock(path)
            if again is None:
                return True
            if (again.st_ino, again.st_dev) != (st.st_ino, st.st_dev):
                return False  # replaced by a fresh claim meanwhile
            aside = path.with_name(f"{path.name}.stale-{self.token}")
            os.rename(path, aside)
            moved = os.stat(aside)
            if (moved.st_ino, moved.st_dev) != (st.st_ino, st.st_dev):
                try:  # we moved a fresh claim: put it back
                    os.link(aside, path)
                except FileExistsError:
                    if self.log is not None:
                        self.log(f"warning: lock race on {path.name}; a point may run twice")
                os.unlink(aside)
                return False
            os.unlink(aside)
            if self.log is not None:
                holder = f"pid {info.get('pid')} on {info.get('host')}" if info else "an unknown holder"
                self.log(f"broke the stale lock {path.name} of {holder}: {why}")
            return True
        except FileNotFoundError:
            return True
        finally:
            try:
                os.unlink(breaker)
            except FileNotFoundError:
                pass

    def _start_heartbeat(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="sweep-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._mutex:
                held = list(self._held.items())
            for rid, path in held:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    if self.log is not None:
                        self.log(f"warning: the lock of {rid} disappeared while it ran")
                    with self._mutex:
                        self._held.pop(rid, None)
                except OSError:
                    pass
