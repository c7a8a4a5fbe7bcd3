"""gunicorn server hooks that publish what each worker is doing.

One line in ``gunicorn.conf.py``::

    from scoreboard.gunicorn import *

Each worker then keeps ``status_<pid>`` in the scoreboard directory: ``idle``, or
``busy GET /path`` while it serves a request (with threads, how many more are in
flight beside the oldest), ``timeout GET /path`` when gunicorn aborts it. The directory
is ``$SCOREBOARD_DIR``, else ``$RUNTIME_DIRECTORY/scoreboard`` (systemd's
``RuntimeDirectory=``); gunicorn refuses to start without either, saying so.

Only workers open files (``post_worker_init``), so ``preload_app`` is safe. A config
that defines the same hooks combines them with :func:`chain`::

    from scoreboard import gunicorn as scoreboard_hooks
    def my_post_request(worker, req, environ, resp): ...
    post_request = scoreboard_hooks.chain(scoreboard_hooks.post_request, my_post_request)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from . import Scoreboard
from .status import request_line

__all__ = [
    "on_starting",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_abort",
    "worker_exit",
]


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
        "run gunicorn from a systemd unit with RuntimeDirectory= (scoreboardctl enable "
        "UNIT then watches it)"
    )


class _Board:
    """This worker's scoreboard and the requests it has in flight (a gthread worker
    serves several at once)."""

    def __init__(self) -> None:
        self.board: Optional[Scoreboard] = None
        self.lock = threading.Lock()
        self.in_flight: Dict[int, Tuple[float, str]] = {}

    def publish(self) -> None:
        if self.board is None:
            return
        if not self.in_flight:
            self.board.update("idle")
            return
        _, oldest = min(self.in_flight.values())
        more = len(self.in_flight) - 1
        self.board.update(f"busy {oldest}" + (f" (+{more} more in flight)" if more else ""))


_worker = _Board()


def on_starting(server: Any) -> None:
    """In the arbiter: the directory exists (it is made), or gunicorn does not start."""
    path = directory()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise RuntimeError(f"scoreboard: cannot make {path}: {error.strerror}") from None


def post_worker_init(worker: Any) -> None:
    """In the worker, once it is ready: its file, saying ``idle``."""
    _worker.board = Scoreboard(directory())
    with _worker.lock:
        _worker.in_flight.clear()
        _worker.publish()


def pre_request(worker: Any, req: Any) -> None:
    """A request begins: ``busy METHOD PATH``."""
    line = request_line(getattr(req, "method", "") or "", getattr(req, "path", "") or "")
    with _worker.lock:
        _worker.in_flight[threading.get_ident()] = (time.monotonic(), line)
        _worker.publish()


def post_request(worker: Any, req: Any, environ: Any = None, resp: Any = None) -> None:
    """A request ended, however (gunicorn calls this in a ``finally``)."""
    with _worker.lock:
        _worker.in_flight.pop(threading.get_ident(), None)
        _worker.publish()


def worker_abort(worker: Any) -> None:
    """gunicorn's timeout (SIGABRT): the request it was stuck in, for the record the
    agent logs when it removes the dead worker's file."""
    with _worker.lock:
        if _worker.board is not None and _worker.in_flight:
            _, oldest = min(_worker.in_flight.values())
            _worker.board.update(f"timeout {oldest}")


def worker_exit(server: Any, worker: Any) -> None:
    """A clean exit: the worker's file goes."""
    board, _worker.board = _worker.board, None
    if board is not None:
        board.close()


def chain(*hooks: Callable[..., Any]) -> Callable[..., None]:
    """One hook that calls each of ``hooks`` in turn with the same arguments."""

    def chained(*args: Any, **kwargs: Any) -> None:
        for hook in hooks:
            hook(*args, **kwargs)

    return chained
