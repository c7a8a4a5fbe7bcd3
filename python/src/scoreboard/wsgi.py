"""WSGI middleware that publishes what each worker process is doing, for servers without
gunicorn's hooks (uWSGI, mod_wsgi, waitress, …)::

    from scoreboard.wsgi import ScoreboardMiddleware
    application = ScoreboardMiddleware(application)

Each process keeps ``status_<pid>`` in the scoreboard directory: ``busy METHOD PATH``
from the call of the application until the server closes its response (PEP 3333: the
body is iterated, then ``close()`` is called), ``idle`` after; with threads, the oldest
request and how many more are in flight. The directory is ``$SCOREBOARD_DIR``, else
``$RUNTIME_DIRECTORY/scoreboard``; without either, making the middleware raises
:class:`RuntimeError` saying what to set. The file is opened by the first request in
each process (a pre-fork server's master never opens it) and removed at a clean exit.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sized, cast

from . import _worker
from .status import request_line

__all__ = ["ScoreboardMiddleware"]

WSGIApplication = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ScoreboardMiddleware:
    """Wraps the WSGI application ``app``; see the module docs."""

    def __init__(self, app: WSGIApplication) -> None:
        # Here, at start-up, rather than at the first request: a missing directory is
        # a configuration error, said once and before any request is served.
        _worker.directory()
        self.app = app

    def start(self) -> None:
        """Publishes ``idle`` now, rather than at this process's first request: for a
        server's post-fork hook (uWSGI: ``uwsgidecorators.postfork(app.start)``)."""
        _worker.WORKER.start()

    def __call__(
        self, environ: Dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        worker = _worker.WORKER
        key = worker.begin(request_line(_text(environ.get("REQUEST_METHOD", "")), _path(environ)))
        try:
            body = self.app(environ, start_response)
        except BaseException:
            worker.end(key)
            raise
        # A sized body stays sized: servers set Content-Length from a one-item list.
        sized = hasattr(body, "__len__")
        return (_SizedBody if sized else _Body)(body, worker, key)


class _Body:
    """The application's response, passed through; the request ends when the server
    closes it, after sending the body (PEP 3333), whether or not the body had a
    ``close`` of its own."""

    __slots__ = ("_body", "_iterator", "_worker", "_key")

    def __init__(self, body: Iterable[bytes], worker: _worker.WorkerStatus, key: Any) -> None:
        self._body = body
        self._iterator: Optional[Iterator[bytes]] = None
        self._worker = worker
        self._key = key

    def __iter__(self) -> Iterator[bytes]:
        self._iterator = iter(self._body)
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._body)
        return next(self._iterator)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._worker.end(self._key)


class _SizedBody(_Body):
    """A :class:`_Body` whose application body has a length, passed through."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(cast(Sized, self._body))


def _text(native: str) -> str:
    """A WSGI "native string" holds bytes as Latin-1 (PEP 3333); read them as UTF-8,
    keeping any byte that is not (as the gunicorn hooks do)."""
    try:
        return native.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Not bytes-as-Latin-1 after all: a server that decoded already.
        return native


def _path(environ: Dict[str, Any]) -> str:
    """The path as the client sent it where the server says (uWSGI's and mod_wsgi's
    ``REQUEST_URI``, gunicorn's ``RAW_URI``), else the mount point and the path."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        return _text(raw)
    return _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
