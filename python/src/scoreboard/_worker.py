"""This process's status file and the requests it has in flight: the one piece behind
the gunicorn hooks, the WSGI middleware and the ASGI middleware.

A process may serve several requests at once (gunicorn's gthread and gevent workers,
an ASGI event loop); its status names the oldest and how many more are in flight:
``busy GET /oldest (+2 more in flight)``, else ``idle``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from typing import Dict, Hashable, Iterator, Optional

from . import Scoreboard, _current_pid

log = logging.getLogger("scoreboard")

# Held only while a process takes over a WorkerStatus it inherited across a fork.
_ADOPTING = threading.Lock()

#: How long (seconds) :meth:`WorkerStatus.abort` waits for a request's thread to let go.
ABORT_LOCK_WAIT = 0.2


def directory() -> str:
    """Where the scoreboard is: ``$SCOREBOARD_DIR``, else
    ``$RUNTIME_DIRECTORY/scoreboard``; raises :class:`RuntimeError` saying what to set."""
    explicit = os.environ.get("SCOREBOARD_DIR")
    if explicit:
        return explicit
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, "scoreboard")
    raise RuntimeError(
        "scoreboard: no directory for the workers' status files: set SCOREBOARD_DIR, or "
        "run the server from a systemd unit with RuntimeDirectory= (scoreboardctl enable "
        "UNIT then watches it)"
    )


class WorkerStatus:
    """This process's file, opened on first use in the process that uses it, and the
    requests in flight, in the order they began. Each call checks the pid (as
    ``os.register_at_fork`` keeps it, which servers that fork in C run too: uWSGI
    calls ``PyOS_AfterFork_Child``), so an object inherited across a fork starts
    afresh in the child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._board: Optional[Scoreboard] = None
        self._in_flight: Dict[Hashable, str] = {}
        self._keys: Iterator[int] = itertools.count()
        #: gunicorn aborted the worker: its file stays for the agent to reap and report.
        self._aborted = False
        self._warned = False
        self._atexit = False

    def start(self, strict: bool = True) -> None:
        """Opens this process's file now, saying ``idle`` (or what is in flight).
        ``strict``: raises what goes wrong (a worker that cannot publish should not
        start), else logs it once, as for a request."""
        if self._pid != _current_pid():
            self._adopt()
        with self._lock:
            self._publish(strict)

    def begin(self, line: str, key: Optional[Hashable] = None) -> Hashable:
        """A request ``line`` (``METHOD PATH``) begins; returns the key that ends it:
        ``key`` if given (a thread's id: its next request replaces a request it never
        ended), else a new one."""
        if self._pid != _current_pid():
            self._adopt()
        with self._lock:
            if key is None:
                key = next(self._keys)
            else:
                # Re-inserted, so that the order stays the order requests began.
                self._in_flight.pop(key, None)
            self._in_flight[key] = line
            self._publish()
        return key

    def end(self, key: Hashable) -> None:
        """The request ``key`` ended, however; ending it twice does no harm."""
        if self._pid != _current_pid():
            self._adopt()
        with self._lock:
            self._in_flight.pop(key, None)
            self._publish()

    def abort(self) -> None:
        """The process is being killed for taking too long (gunicorn's timeout): the
        oldest request becomes ``timeout METHOD PATH`` and stays the last word.

        Runs in a signal handler, which may have interrupted this very thread inside
        :meth:`begin` or :meth:`end`: the lock is waited for briefly (another thread
        lets it go), then the file is left saying ``busy``, which is still the
        request."""
        self._aborted = True
        if not self._lock.acquire(timeout=ABORT_LOCK_WAIT):
            return
        try:
            if self._board is not None and self._in_flight and self._pid == _current_pid():
                self._board.update("timeout " + next(iter(self._in_flight.values())))
        finally:
            self._lock.release()

    def close(self) -> None:
        """The process exits: its file goes, unless it was aborted — then the file stays,
        saying which request timed out, until a reader (the agent) reaps it and logs
        that."""
        with self._lock:
            board, self._board = self._board, None
            self._in_flight.clear()
            aborted, self._aborted = self._aborted, False
            if board is None or self._pid != _current_pid():
                return
            if aborted:
                board.leave()
            else:
                board.close()

    def _adopt(self) -> None:
        pid = _current_pid()
        with _ADOPTING:
            if pid == self._pid:
                return
            # The parent's requests and lock are not ours; its file is not ours to touch
            # (the Scoreboard drops it without unlocking or removing it).
            inherited, self._board = self._board, None
            if inherited is not None:
                inherited._forget_inherited()
            self._lock = threading.Lock()
            self._in_flight = {}
            self._aborted = False
            self._warned = False
            self._pid = pid

    def _publish(self, strict: bool = False) -> None:
        """Writes the status; holds the lock. A failure raises when ``strict``, else
        is logged once per process: a request is not failed for its status."""
        # Once aborted, the timed-out request stays the last word: gunicorn's own
        # `finally` runs post_request as the abort unwinds.
        if self._aborted:
            return
        in_flight = self._in_flight
        if not in_flight:
            text = "idle"
        else:
            text = "busy " + next(iter(in_flight.values()))
            if len(in_flight) > 1:
                text += f" (+{len(in_flight) - 1} more in flight)"
        try:
            board = self._board
            if board is None:
                board = self._board = Scoreboard(directory(), id=str(self._pid))
                if not self._atexit:
                    # A clean exit removes the file; a crash leaves it for readers to reap.
                    self._atexit = True
                    atexit.register(self.close)
            board.update(text)
        except (OSError, RuntimeError) as error:
            if strict:
                raise
            if not self._warned:
                self._warned = True
                log.warning("scoreboard: cannot publish this worker's status: %s", error)


#: The one per process: one status file per process, whichever front end feeds it.
WORKER = WorkerStatus()
