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
import mmap
import os
import stat
import sys
import threading
import time
import weakref
from typing import Dict, List, Optional, Union, cast

from . import _frame

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_MAX_STATUS_BYTES",
    "DEFAULT_MAX_STATUS_LEN",
    "DEFAULT_MAX_WORKERS",
    "FRAME_CACHE_ENTRIES",
    "FRAME_CACHE_STATUS_LEN",
    "MIN_CAPACITY",
    "Scoreboard",
    "VISIBLE_EVERY_NS",
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

#: How often at most an update of a mapped file moves its modification time itself:
#: 100 ms, a tenth of the agent's finest ``stuck_after`` (the Rust crate's
#: ``VISIBLE_EVERY``).
VISIBLE_EVERY_NS = 100_000_000
#: The smallest size of a mapped status file: a 64-byte status with room to grow.
MIN_CAPACITY = 256

#: Frames of at most this many statuses are kept per worker, of statuses up to this
#: long: "idle" and the paths a server keeps serving cost no md5 (a new frame costs
#: three times what a kept one does in a worker whose caches the request has cooled).
FRAME_CACHE_ENTRIES = 64
FRAME_CACHE_STATUS_LEN = 256

# Bound once: each attribute look-up is a measurable part of an update.
_md5 = _frame.md5
_pack_length = _frame.pack_length
_monotonic_ns = time.monotonic_ns
# Statuses whose frames are kept: hashable, with no __hash__ or __eq__ of their own.
_KEPT_TYPES = (str, bytes)
# From 3.13 a mapping need not keep its own duplicate of the descriptor.
#: posix_fallocate's answers where a filesystem cannot reserve blocks ahead (not a
#: full one): such a file is written with pwrite instead of mapped.
_CANNOT_RESERVE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})
_MMAP_OPTIONS: Dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _capacity_for(frame_len: int) -> int:
    """A mapped file's size for a frame of ``frame_len`` bytes: a power of two, so a
    status that keeps growing costs few remaps."""
    return max(MIN_CAPACITY, 1 << (frame_len - 1).bit_length())


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


def _current_pid() -> int:
    """This process's id as the at-fork hook keeps it: no system call (``os.getpid``
    costs as much as a whole update)."""
    return _PID


def _after_fork_in_child() -> None:
    global _PID
    _PID = os.getpid()
    for board in list(_LIVE):
        board._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Scoreboard:
    """A worker's handle on a scoreboard directory.

    The first :meth:`update` creates the worker's file (``status_<id>.tmp``, locked,
    its first frame written, then renamed into place, as Parallel::Scoreboard does);
    later ones rewrite the frame in place. :meth:`close` (or leaving a ``with`` block)
    removes the file.

    ``mapped`` (the default) sizes the file to a capacity (256 bytes, or the next power
    of two that holds the frame), maps it shared and stores each frame into the
    mapping: no system call per update. Readers see the stores at once (the mapping is
    the file's page cache), catch a half-done one by its md5 as they catch a half-done
    write, and ignore the slack after the frame. A store does not move the file's
    modification time, the agent's sign of progress, so an update moves it itself
    (``futimens``) once :data:`VISIBLE_EVERY_NS` has passed since it last moved: an
    update, whatever its text, is seen within that interval. An update that repeats
    the status already there only does that. ``mapped=False``, or a filesystem that
    cannot map, writes each frame with one ``pwrite``, which moves the modification
    time by itself.

    ``id`` defaults to the process id, as Parallel::Scoreboard's. After a fork, the child
    never touches the parent's file: its first update creates its own.
    """

    def __init__(
        self,
        directory: PathLike,
        id: Optional[str] = None,
        *,
        create: bool = True,
        mapped: bool = True,
    ) -> None:
        self._directory = os.fspath(directory)
        self._fixed_id = None if id is None else _check_id(id)
        self._want_mapped = mapped
        self._fd: Optional[int] = None
        self._name = ""
        #: The pid that owns ``_fd``; 0 while there is none, so that one comparison
        #: with the current pid tells an update it must (re)create the file.
        self._owner_pid = 0
        self._mapping: Optional[mmap.mmap] = None
        self._capacity = 0
        #: The frame in the file, so a repeat costs a comparison; None before the
        #: first frame (the file's zeros must not pass for an empty status).
        self._last: Optional[bytes] = None
        #: Frames of statuses seen lately, by status.
        self._frames: Dict[Union[str, bytes], bytes] = {}
        #: When the modification time last moved (time.monotonic_ns).
        self._visible_at = 0
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

    @property
    def mapped(self) -> bool:
        """Whether updates store into a mapping of the file (else they ``pwrite``);
        known once the first update has created the file."""
        return self._mapping is not None

    def update(self, status: Union[str, bytes]) -> None:
        """Publishes ``status``. A ``str`` is encoded as UTF-8, with
        ``surrogateescape`` so that no byte a ``str`` can carry is lost."""
        # The hot path of every request: the names it calls are module globals bound
        # at import, a status seen lately costs a dictionary look-up instead of an
        # encoding and an md5, and with the file open nothing makes a system call but,
        # at most every VISIBLE_EVERY_NS, the one that moves the modification time.
        try:
            frame = self._frames.get(status)
        except TypeError:  # unhashable: a bytearray, a memoryview
            frame = None
        if frame is None:
            frame = self._frame_for(status)
        with self._lock:
            mapping = self._mapping
            if mapping is None or self._owner_pid != _PID:
                # No file yet, the parent's inherited across a fork, or no mapping.
                self._update_unmapped(frame)
                return
            if frame is not self._last:
                end = len(frame)
                if end > self._capacity:
                    grown = self._grow(end)
                    if grown is None:
                        self._pwrite(frame)
                        return
                    mapping = grown
                # One memcpy of the whole frame, built beforehand: a reader can catch
                # it half-done only within those few instructions, and retries by md5.
                mapping[:end] = frame
                self._last = frame
            now = _monotonic_ns()
            if now - self._visible_at >= VISIBLE_EVERY_NS:
                self._touch(now)

    def _frame_for(self, status: Union[str, bytes]) -> bytes:
        """The frame for ``status``, kept for next time when it is short."""
        try:
            # For a str without lone surrogates the same bytes as surrogateescape,
            # without parsing the arguments that name it.
            data = status.encode()  # type: ignore[union-attr]
        except AttributeError:
            data = bytes(cast(bytes, status))
        except UnicodeEncodeError:
            data = status.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
        length = len(data)
        frame: bytes = _md5(data).digest() + _pack_length(length) + data
        if length <= FRAME_CACHE_STATUS_LEN and status.__class__ in _KEPT_TYPES:
            frames = self._frames
            if len(frames) >= FRAME_CACHE_ENTRIES:
                # A server with many distinct paths: start over rather than keep score.
                frames.clear()
            frames[status] = frame
        return frame

    def _update_unmapped(self, frame: bytes) -> None:
        if self._owner_pid != _PID:
            self._create(frame)
        else:
            self._pwrite(frame)

    def close(self) -> None:
        """Removes this worker's file (only this process's own) and closes it."""
        with self._lock:
            fd = self._release()
            if fd is None:
                return
            try:
                if self._owner_pid == os.getpid():
                    self._remove_own(fd)
            finally:
                self._owner_pid = 0
                os.close(fd)

    def leave(self) -> None:
        """Closes without removing the file: it keeps its last status until a reader
        finds its owner gone and removes it — what a worker that is being killed does,
        so that the agent can say what it was doing."""
        with self._lock:
            fd = self._release()
            self._owner_pid = 0
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> "Scoreboard":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _release(self) -> Optional[int]:
        """Unmaps the file and hands back its descriptor, for the caller to close."""
        mapping, self._mapping = self._mapping, None
        if mapping is not None:
            mapping.close()
        fd, self._fd = self._fd, None
        self._last = None
        return fd

    def _pwrite(self, frame: bytes) -> None:
        assert self._fd is not None
        try:
            os.pwrite(self._fd, frame, 0)
        except OSError as error:
            raise _named(error, "pwrite", self.path or self._directory) from None
        self._last = frame

    def _touch(self, now: int) -> None:
        """Moves the file's modification time to now (``futimens(fd, NULL)``; the
        access time moves too, which no reader looks at)."""
        assert self._fd is not None
        try:
            os.utime(self._fd)
        except OSError as error:
            raise _named(error, "futimens", self.path or self._directory) from None
        self._visible_at = now

    def _map(self, fd: int, frame_len: int) -> None:
        """Sizes the file for a frame of ``frame_len`` bytes and maps it; leaves
        updates to ``pwrite`` where the filesystem cannot map or reserve."""
        capacity = _capacity_for(frame_len)
        os.ftruncate(fd, capacity)
        try:
            # The blocks reserved now: a store into a mapping whose filesystem is full
            # (a shared /run another service filled) is SIGBUS, which kills the
            # worker; here it is ENOSPC, an error the caller sees.
            os.posix_fallocate(fd, 0, capacity)
        except OSError as error:
            if error.errno not in _CANNOT_RESERVE:
                raise
            self._unmap()
            return
        try:
            mapping = mmap.mmap(fd, capacity, mmap.MAP_SHARED, **_MMAP_OPTIONS)
        except (OSError, ValueError):
            # Some FUSE and network filesystems: the file keeps its size, slack that
            # readers ignore, and each frame is written with pwrite.
            self._unmap()
            return
        if self._mapping is not None:
            self._mapping.close()
        self._mapping, self._capacity = mapping, capacity

    def _unmap(self) -> None:
        """Updates go through ``pwrite`` from now on."""
        if self._mapping is not None:
            self._mapping.close()
        self._mapping, self._capacity = None, 0

    def _grow(self, frame_len: int) -> Optional[mmap.mmap]:
        """The mapping made room for a frame of ``frame_len`` bytes, or ``None`` when
        the file could not be mapped again (updates then use ``pwrite``)."""
        assert self._fd is not None
        try:
            self._map(self._fd, frame_len)
        except OSError as error:
            raise _named(error, "sizing", self.path or self._directory) from None
        return self._mapping

    def _create(self, frame: bytes) -> None:
        """Creates the file with its first frame. Locked before the rename, so a
        reader never sees an unlocked ``status_<id>`` of ours (it would reap it);
        written before it, so a reader never sees it empty."""
        global _PID
        if self._fd is not None:
            self._forget_inherited()
        # Read afresh (creating is rare): a fork made in C, as uWSGI's, may have run no
        # at-fork hook to keep _PID up to date.
        pid = _PID = os.getpid()
        worker_id = self._fixed_id or str(pid)
        name = STATUS_PREFIX + worker_id
        tmp = name + TMP_SUFFIX
        # Read and write: a shared writable mapping needs both.
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            directory = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise _named(error, "open directory", self._directory) from None
        try:
            for _ in range(CREATE_ATTEMPTS):
                tmp_path = os.path.join(self._directory, tmp)
                try:
                    fd = os.open(tmp, flags, 0o666, dir_fd=directory)
                except OSError as error:
                    raise _named(error, "create", tmp_path) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._fd = fd
                    if self._want_mapped:
                        self._map(fd, len(frame))
                    if self._mapping is not None:
                        self._mapping[: len(frame)] = frame
                    else:
                        os.pwrite(fd, frame, 0)
                    self._last = frame
                    os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
                except FileNotFoundError:
                    # A reader of an old Parallel::Scoreboard removed our .tmp: again.
                    self._release()
                    os.close(fd)
                    continue
                except OSError as error:
                    self._release()
                    os.close(fd)
                    # A full filesystem, say: nothing of ours is left behind.
                    try:
                        os.unlink(tmp, dir_fd=directory)
                    except OSError:
                        pass
                    raise _named(error, "create", tmp_path) from None
                # The rename keeps the modification time the write or ftruncate set.
                self._name, self._owner_pid = name, pid
                self._visible_at = _monotonic_ns()
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
        (the lock belongs to the open file, which the parent keeps; unmapping only
        drops the child's copy of the mapping)."""
        self._lock = threading.Lock()
        self._owner_pid = 0
        fd = self._release()
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
    dfd: int, name: str, max_len: int, budget: List[int]
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


def _read_frame(fd: int, max_len: int, budget: List[int]) -> Optional[bytes]:
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
