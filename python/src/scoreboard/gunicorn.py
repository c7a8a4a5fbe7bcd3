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
from typing import Any, Callable

from ._worker import WORKER, directory
from .status import request_line

__all__ = [
    "on_starting",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_abort",
    "worker_exit",
]


def on_starting(server: Any) -> None:
    """In the arbiter: the directory exists (it is made), or gunicorn does not start."""
    path = directory()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise RuntimeError(f"scoreboard: cannot make {path}: {error.strerror}") from None


def post_worker_init(worker: Any) -> None:
    """In the worker, once it is ready: its file, saying ``idle``."""
    WORKER.start()


def pre_request(worker: Any, req: Any) -> None:
    """A request begins: ``busy METHOD PATH``. Keyed by thread (by greenlet under
    gevent): a worker thread serves one request at a time."""
    line = request_line(getattr(req, "method", "") or "", getattr(req, "path", "") or "")
    WORKER.begin(line, threading.get_ident())


def post_request(worker: Any, req: Any, environ: Any = None, resp: Any = None) -> None:
    """A request ended, however (gunicorn calls this in a ``finally``)."""
    WORKER.end(threading.get_ident())


def worker_abort(worker: Any) -> None:
    """gunicorn's timeout (SIGABRT): the request it was stuck in, for the record the
    agent logs when it removes the dead worker's file."""
    WORKER.abort()


def worker_exit(server: Any, worker: Any) -> None:
    """The worker exits: its file goes, unless gunicorn aborted it — then the file
    stays, saying which request timed out, until the agent reaps it and logs that."""
    WORKER.close()


def chain(*hooks: Callable[..., Any]) -> Callable[..., None]:
    """One hook that calls each of ``hooks`` in turn with the same arguments."""

    def chained(*args: Any, **kwargs: Any) -> None:
        for hook in hooks:
            hook(*args, **kwargs)

    return chained
