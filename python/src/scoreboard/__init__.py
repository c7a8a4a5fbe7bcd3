"""Worker status files for pre-forking servers, byte for byte Perl's
Parallel::Scoreboard and the Rust crate ``scoreboard``.

Each worker keeps one file, ``status_<id>`` in a directory, holding what it is doing
now, framed ``md5(status) [16 B] | len [u32 BE] | status``; it holds ``flock(LOCK_EX)``
on it for its whole life, so a reader whose non-blocking lock succeeds knows the owner
died, and removes the file.

>>> import tempfile, os
>>> directory = os.path.join(tempfile.mkdtemp(), "scoreboard")
>>> with Scoreboard(directory, id="w1") as board:
...     board.update("busy GET /report")
...     read_dir(directory)
{'w1': b'busy GET /report'}
>>> read_dir(directory)
{}
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
import weakref
from typing import Dict, Optional, Union

from . import _frame

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_MAX_STATUS_BYTES",
    "DEFAULT_MAX_STATUS_LEN",
    "DEFAULT_MAX_WORKERS",
    "Scoreboard",
    "read_dir",
]

STATUS_PREFIX = "status_"
TMP_SUFFIX = ".tmp"

#: A status longer than this is not read (the file is skipped).
DEFAULT_MAX_STATUS_LEN = 1 << 20
#: At most this many worker files are opened per read.
DEFAULT_MAX_WORKERS = 16_384
#: At most this many bytes are read per read of a directory, torn re-reads included.
DEFAULT_MAX_STATUS_BYTES = 16 << 20
#: A frame whose md5 never matches in this many reads is given up on (torn).
TORN_READ_ATTEMPTS = 10
#: How often the create-lock-rename dance is restarted when another process interferes.
CREATE_ATTEMPTS = 16

PathLike = Union[str, "os.PathLike[str]"]


def _named(error: OSError, operation: str, path: str) -> OSError:
    """The same error, saying what was done to which path."""
    strerror = error.strerror or str(error)
    return type(error)(error.errno, f"{operation} {path}: {strerror}", path)


def _check_id(worker_id: str) -> str:
    if (
        not worker_id
        or "/" in worker_id
        or "\0" in worker_id
        or worker_id.endswith(TMP_SUFFIX)
    ):
        raise ValueError(
            f"worker id {worker_id!r} must be non-empty, hold no '/' or NUL and not end in "
            f"{TMP_SUFFIX!r}"
        )
    return worker_id


# Scoreboards alive in this process, so that a forked child drops the handles it
# inherited (their locks are the parent's) before it publishes anything.
_LIVE: "weakref.WeakSet[Scoreboard]" = weakref.WeakSet()

# This process's id, kept up to date across os.fork by the hook below: os.getpid() is
# a system call, a third of an update's cost.
_PID = os.getpid()


def _after_fork_in_child() -> None:
    global _PID
    _PID = os.getpid()
    for board in list(_LIVE):
        board._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Scoreboard:
    """A worker's handle on a scoreboard directory.

    The first :meth:`update` creates the worker's file (``status_<id>.tmp``, locked, then
    renamed into place, as Parallel::Scoreboard does); later ones rewrite the frame in
    place with one ``pwrite``, which also moves the file's modification time — what the
    agent takes as progress. :meth:`close` (or leaving a ``with`` block) removes the file.

    ``id`` defaults to the process id, as Parallel::Scoreboard's. After a fork, the child
    never touches the parent's file: its first update creates its own.
    """

    def __init__(
        self, directory: PathLike, id: Optional[str] = None, *, create: bool = True
    ) -> None:
        self._directory = os.fspath(directory)
        self._fixed_id = None if id is None else _check_id(id)
        self._fd: Optional[int] = None
        self._name = ""
        self._owner_pid = 0
        self._lock = threading.Lock()
        if create:
            try:
                os.mkdir(self._directory, 0o777)
            except FileExistsError:
                pass
            except OSError as error:
                raise _named(error, "mkdir", self._directory) from None
        try:
            mode = os.stat(self._directory).st_mode
        except OSError as error:
            raise _named(error, "stat", self._directory) from None
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(
                errno.ENOTDIR,
                f"open {self._directory}: not a directory",
                self._directory,
            )
        _LIVE.add(self)

    @property
    def directory(self) -> str:
        """The scoreboard directory."""
        return self._directory

    @property
    def id(self) -> str:
        """This worker's id: the one given, else the current process id."""
        return self._fixed_id or str(os.getpid())

    @property
    def path(self) -> Optional[str]:
        """The worker's file, once the first update has created it."""
        if self._fd is None:
            return None
        return os.path.join(self._directory, self._name)

    def update(self, status: Union[str, bytes]) -> None:
        """Publishes ``status``. A ``str`` is encoded as UTF-8, with
        ``surrogateescape`` so that no byte a ``str`` can carry is lost."""
        if isinstance(status, str):
            data = status.encode("utf-8", "surrogateescape")
        else:
            data = bytes(status)
        frame = _frame.encode(data)
        with self._lock:
            pid = _PID
            if self._fd is not None and self._owner_pid != pid:
                self._forget_inherited()
            if self._fd is None:
                self._create(pid)
            assert self._fd is not None
            try:
                os.pwrite(self._fd, frame, 0)
            except OSError as error:
                raise _named(error, "pwrite", self.path or self._directory) from None

    def close(self) -> None:
        """Removes this worker's file (only this process's own) and closes it."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                if self._owner_pid == os.getpid():
                    self._remove_own(fd)
            finally:
                os.close(fd)

    def leave(self) -> None:
        """Closes without removing the file: it keeps its last status until a reader
        finds its owner gone and removes it — what a worker that is being killed does,
        so that the agent can say what it was doing."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> "Scoreboard":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _create(self, pid: int) -> None:
        worker_id = self._fixed_id or str(pid)
        name = STATUS_PREFIX + worker_id
        tmp = name + TMP_SUFFIX
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            directory = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise _named(error, "open directory", self._directory) from None
        try:
            for _ in range(CREATE_ATTEMPTS):
                try:
                    fd = os.open(tmp, flags, 0o666, dir_fd=directory)
                except OSError as error:
                    raise _named(error, "create", os.path.join(self._directory, tmp)) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
                except FileNotFoundError:
                    # A reader of an old Parallel::Scoreboard removed our .tmp: again.
                    os.close(fd)
                    continue
                except OSError as error:
                    os.close(fd)
                    raise _named(error, "rename", os.path.join(self._directory, tmp)) from None
                self._fd, self._name, self._owner_pid = fd, name, pid
                return
            raise FileExistsError(
                errno.EBUSY,
                f"create {os.path.join(self._directory, name)}: another process kept "
                f"removing it ({CREATE_ATTEMPTS} attempts)",
                os.path.join(self._directory, name),
            )
        finally:
            os.close(directory)

    def _remove_own(self, fd: int) -> None:
        """Unlinks our name, unless it no longer names our file."""
        path = os.path.join(self._directory, self._name)
        try:
            ours = os.fstat(fd)
            there = os.stat(path, follow_symlinks=False)
            if (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise _named(error, "unlink", path) from None

    def _forget_inherited(self) -> None:
        """In a forked child: drop the parent's file without unlocking or removing it
        (the lock belongs to the open file, which the parent keeps)."""
        self._lock = threading.Lock()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def read_dir(
    directory: PathLike,
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    max_status_bytes: int = DEFAULT_MAX_STATUS_BYTES,
    max_status_len: int = DEFAULT_MAX_STATUS_LEN,
) -> Dict[str, bytes]:
    """Every live worker's status in ``directory``, by id; dead workers' files are
    removed. ``*.tmp`` files are skipped, a symbolic link or anything but a regular
    file with one name is never opened through, a torn frame is re-read a bounded
    number of times, and what is read is bounded by ``max_workers`` files and
    ``max_status_bytes`` bytes."""
    path = os.fspath(directory)
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise _named(error, "open directory", path) from None
    statuses: Dict[str, bytes] = {}
    budget = [max_status_bytes]
    opened = 0
    try:
        with os.scandir(dfd) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(STATUS_PREFIX) or name.endswith(TMP_SUFFIX):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                if opened >= max_workers or budget[0] <= 0:
                    break
                opened += 1
                status = _read_entry(dfd, name, max_status_len, budget)
                if status is not None:
                    statuses[name[len(STATUS_PREFIX) :]] = status
    finally:
        os.close(dfd)
    return statuses


def _read_entry(
    dfd: int, name: str, max_len: int, budget: list
) -> Optional[bytes]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError:
        # Gone already, a symbolic link (ELOOP), or not ours to read.
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_frame(fd, max_len, budget)
        _reap(dfd, name, st)
        return None
    finally:
        os.close(fd)


def _reap(dfd: int, name: str, dead: os.stat_result) -> None:
    """Removes a dead worker's file, unless the name now holds another (a new worker
    that reused the id). Between the check and the unlink a new worker could still rename
    its file in; the Rust reader closes that window with ``renameat2``."""
    try:
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (dead.st_dev, dead.st_ino):
            os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _read_frame(fd: int, max_len: int, budget: list) -> Optional[bytes]:
    want = 4096
    for attempt in range(TORN_READ_ATTEMPTS):
        want = min(want, budget[0])
        if want <= 0:
            return None
        data = os.pread(fd, want, 0)
        budget[0] -= len(data)
        try:
            return _frame.decode(data, max_len)
        except (_frame.Short, _frame.TooLong):
            return None
        except _frame.Truncated as truncated:
            if len(data) < want:
                # The file ends before the frame does: a write in progress.
                pass
            else:
                want = truncated.needed
                continue
        except _frame.DigestMismatch:
            pass
        if attempt >= 3:
            time.sleep(0.0001 * (1 << (attempt - 3)))
    return None
