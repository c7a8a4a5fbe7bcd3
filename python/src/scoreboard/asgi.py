"""ASGI 3 middleware that publishes what each worker process is doing (uvicorn, also
under gunicorn's ``UvicornWorker``; hypercorn, daphne)::

    from scoreboard.asgi import ScoreboardMiddleware
    app = ScoreboardMiddleware(app)

One process serves many requests at once on its event loop; its ``status_<pid>`` names
the oldest HTTP request in flight and how many more there are,
``busy GET /oldest (+2 more in flight)``, else ``idle``. A request is in flight from the
call of the application until it returns (or is cancelled, as when the client goes).
Lifespan and websocket scopes pass through untouched; lifespan's start-up, which runs
in each worker process, publishes ``idle`` there before any request. The directory is
``$SCOREBOARD_DIR``, else ``$RUNTIME_DIRECTORY/scoreboard``; without either, making the
middleware raises :class:`RuntimeError` saying what to set.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping

from . import _worker
from .status import request_line

__all__ = ["ScoreboardMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]


class ScoreboardMiddleware:
    """Wraps the ASGI 3 application ``app``; see the module docs."""

    def __init__(self, app: ASGIApplication) -> None:
        # At start-up, not at the first request: a missing directory is a configuration
        # error, said once and before anything is served.
        _worker.directory()
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind != "http":
            if kind == "lifespan":
                # Never fails the server's start-up: a problem is logged (once).
                _worker.WORKER.start(strict=False)
            await self.app(scope, receive, send)
            return
        worker = _worker.WORKER
        key = worker.begin(request_line(str(scope.get("method", "")), _path(scope)))
        try:
            await self.app(scope, receive, send)
        finally:
            worker.end(key)


def _path(scope: Scope) -> str:
    """The path as the client sent it (``raw_path``, bytes, kept as surrogateescape
    where not UTF-8), else the mount point and the decoded path."""
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "surrogateescape")
    return str(scope.get("root_path", "")) + str(scope.get("path", ""))
