"""The WSGI and ASGI middleware: what a worker's file says while requests run, under a
real WSGI server (wsgiref) and an asyncio event loop standing in for uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, MutableMapping
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from scoreboard import _worker, asgi, read_dir, wsgi

ME = str(os.getpid())


@pytest.fixture
def board_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "scoreboard"
    monkeypatch.setenv("SCOREBOARD_DIR", str(directory))
    try:
        yield directory
    finally:
        _worker.WORKER.close()


def mine(directory: Path) -> bytes:
    """This process's status; nothing before the first request made the directory."""
    if not directory.exists():
        return b""
    return read_dir(directory).get(ME, b"")


def environ(method: str = "GET", **extra: str) -> Dict[str, Any]:
    env: Dict[str, Any] = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": "/"}
    env.update(extra)
    return env


def start_response(status: str, headers: List[Any], exc_info: Any = None) -> Callable[..., Any]:
    return lambda data: None


# WSGI


def test_busy_until_the_server_closes_the_response(board_dir: Path) -> None:
    seen: List[bytes] = []

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start("200 OK", [])
        seen.append(mine(board_dir))
        return [b"a", b"b"]

    body = wsgi.ScoreboardMiddleware(app)(environ(PATH_INFO="/report"), start_response)
    assert seen == [b"busy GET /report"]
    assert list(body) == [b"a", b"b"]
    # The body is sent; the request is not over until close().
    assert mine(board_dir) == b"busy GET /report"
    body.close()  # type: ignore[attr-defined]
    assert mine(board_dir) == b"idle"


def test_a_sized_body_stays_sized(board_dir: Path) -> None:
    # Servers set Content-Length from a one-item list's length.
    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start("200 OK", [])
        return [b"hello"]

    body = wsgi.ScoreboardMiddleware(app)(environ(PATH_INFO="/"), start_response)
    assert len(body) == 1  # type: ignore[arg-type]
    body.close()  # type: ignore[attr-defined]

    def generator_app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start("200 OK", [])
        yield b"hello"

    unsized = wsgi.ScoreboardMiddleware(generator_app)(environ(PATH_INFO="/"), start_response)
    assert not hasattr(unsized, "__len__")
    unsized.close()  # type: ignore[attr-defined]


def test_a_generator_body_is_busy_while_it_runs_and_its_close_is_called(board_dir: Path) -> None:
    closed = []

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterator[bytes]:
        start("200 OK", [])
        try:
            yield mine(board_dir)
            yield b"never"
        finally:
            closed.append(True)

    body = wsgi.ScoreboardMiddleware(app)(environ(PATH_INFO="/stream"), start_response)
    assert next(iter(body)) == b"busy GET /stream"
    body.close()  # type: ignore[attr-defined]
    assert closed == [True]
    assert mine(board_dir) == b"idle"


def test_an_application_that_raises_leaves_the_worker_idle(board_dir: Path) -> None:
    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        raise ValueError("broken")

    with pytest.raises(ValueError):
        wsgi.ScoreboardMiddleware(app)(environ(), start_response)
    assert mine(board_dir) == b"idle"


def test_the_path_is_what_the_client_sent_without_its_query(board_dir: Path) -> None:
    lines: List[bytes] = []

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        lines.append(mine(board_dir))
        return []

    middleware = wsgi.ScoreboardMiddleware(app)
    # uWSGI's REQUEST_URI, raw; else the mount point and PATH_INFO, whose bytes
    # arrive as Latin-1 (PEP 3333) and are read back as UTF-8.
    for env in (
        environ("POST", REQUEST_URI="/api/items?id=7", PATH_INFO="/items"),
        environ(SCRIPT_NAME="/app", PATH_INFO="/caf\u00c3\u00a9"),
        environ(PATH_INFO="/a\nb\xff"),
    ):
        middleware(env, start_response).close()  # type: ignore[attr-defined]
    assert lines == [b"busy POST /api/items", "busy GET /app/café".encode(), b"busy GET /a\\nb\\xff"]


def test_threads_show_the_oldest_and_how_many_more(board_dir: Path) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        started.release()
        release.wait(10)
        return [b""]

    middleware = wsgi.ScoreboardMiddleware(app)

    def serve(path: str) -> None:
        middleware(environ(PATH_INFO=path), start_response).close()  # type: ignore[attr-defined]

    threads = []
    for path in ("/first", "/second", "/third"):
        thread = threading.Thread(target=serve, args=(path,))
        thread.start()
        started.acquire()
        threads.append(thread)
    assert mine(board_dir) == b"busy GET /first (+2 more in flight)"
    release.set()
    for thread in threads:
        thread.join()
    assert mine(board_dir) == b"idle"


def test_without_a_directory_the_middleware_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SCOREBOARD_DIR", raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    with pytest.raises(RuntimeError, match="set SCOREBOARD_DIR"):
        wsgi.ScoreboardMiddleware(lambda e, s: [])
    with pytest.raises(RuntimeError, match="set SCOREBOARD_DIR"):
        asgi.ScoreboardMiddleware(_asgi_ok)


def test_a_forked_worker_has_its_own_file_and_none_of_the_parents_requests(
    board_dir: Path,
) -> None:
    """A pre-fork server whose master served (or imported) the application: each
    worker starts afresh in its own file."""

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        return [b""]

    # Bodies left open: both requests stay in flight.
    middleware = wsgi.ScoreboardMiddleware(app)
    parent_body = middleware(environ(PATH_INFO="/parent"), start_response)
    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            middleware(environ(PATH_INFO="/child"), start_response)
            os.write(go, b"x")
            time.sleep(10)
        finally:
            os._exit(0)
    try:
        os.read(ready, 1)
        assert read_dir(board_dir) == {ME: b"busy GET /parent", str(pid): b"busy GET /child"}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
        os.close(go)
    parent_body.close()  # type: ignore[attr-defined]
    assert read_dir(board_dir) == {ME: b"idle"}


def test_under_a_real_wsgi_server(board_dir: Path) -> None:
    """wsgiref iterates the body, then closes it, as PEP 3333 has every server do."""
    gate = threading.Event()

    def app(environ: Dict[str, Any], start: Callable[..., Any]) -> Iterator[bytes]:
        start("200 OK", [("Content-Type", "text/plain")])
        yield b"first "
        gate.wait(10)
        yield b"last"

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, wsgi.ScoreboardMiddleware(app), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got: List[bytes] = []
        client = threading.Thread(
            target=lambda: got.append(
                urllib.request.urlopen(
                    f"http://127.0.0.1:{server.server_port}/slow?x=1", timeout=10
                ).read()
            )
        )
        client.start()
        assert _wait_for(lambda: mine(board_dir) == b"busy GET /slow"), mine(board_dir)
        gate.set()
        client.join()
        assert got == [b"first last"]
        assert _wait_for(lambda: mine(board_dir) == b"idle"), mine(board_dir)
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(check: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# ASGI, on an asyncio loop as uvicorn runs it


async def _asgi_ok(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def http_scope(path: str, raw_path: Any = None, method: str = "GET") -> Dict[str, Any]:
    scope: Dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    if raw_path is not None:
        scope["raw_path"] = raw_path
    return scope


async def _receive() -> Dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: MutableMapping[str, Any]) -> None:
    pass


def test_asgi_requests_in_flight_on_one_loop(board_dir: Path) -> None:
    gates: Dict[str, asyncio.Event] = {}

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await gates[scope["path"]].wait()
        await _asgi_ok(scope, receive, send)

    middleware = asgi.ScoreboardMiddleware(app)

    async def main() -> List[bytes]:
        seen = []
        tasks = []
        for path in ("/a", "/b", "/c"):
            gates[path] = asyncio.Event()
            tasks.append(asyncio.create_task(middleware(http_scope(path), _receive, _send)))
            await asyncio.sleep(0)
        seen.append(mine(board_dir))
        gates["/a"].set()
        await tasks[0]
        seen.append(mine(board_dir))
        gates["/c"].set()
        await tasks[2]
        seen.append(mine(board_dir))
        gates["/b"].set()
        await tasks[1]
        seen.append(mine(board_dir))
        return seen

    assert asyncio.run(main()) == [
        b"busy GET /a (+2 more in flight)",
        b"busy GET /b (+1 more in flight)",
        b"busy GET /b",
        b"idle",
    ]


def test_asgi_a_cancelled_or_failed_request_ends(board_dir: Path) -> None:
    async def hang(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/fail":
            raise ValueError("broken")
        await asyncio.sleep(60)

    middleware = asgi.ScoreboardMiddleware(hang)

    async def main() -> List[bytes]:
        task = asyncio.create_task(middleware(http_scope("/hang"), _receive, _send))
        await asyncio.sleep(0)
        seen = [mine(board_dir)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen.append(mine(board_dir))
        with pytest.raises(ValueError):
            await middleware(http_scope("/fail"), _receive, _send)
        seen.append(mine(board_dir))
        return seen

    assert asyncio.run(main()) == [b"busy GET /hang", b"idle", b"idle"]


def test_asgi_the_path_is_the_raw_one_without_its_query(board_dir: Path) -> None:
    seen: List[bytes] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(mine(board_dir))

    middleware = asgi.ScoreboardMiddleware(app)
    asyncio.run(middleware(http_scope("/café", raw_path=b"/caf%C3%A9\xff"), _receive, _send))
    asyncio.run(middleware(http_scope("/x?y", method="PUT"), _receive, _send))
    assert seen == [b"busy GET /caf%C3%A9\\xff", b"busy PUT /x"]


def test_asgi_lifespan_and_websockets_pass_through(board_dir: Path) -> None:
    """Lifespan's start-up, in the worker process, publishes idle before any request;
    its messages and a websocket's reach the application untouched, uncounted."""
    received: List[str] = []
    seen: List[bytes] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(mine(board_dir))
        if scope["type"] == "lifespan":
            message = await receive()
            received.append(message["type"])
            await send({"type": "lifespan.startup.complete"})
        else:
            received.append(scope["type"])

    sent: List[MutableMapping[str, Any]] = []

    async def lifespan_receive() -> Dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def record(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    middleware = asgi.ScoreboardMiddleware(app)
    asyncio.run(middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, record))
    asyncio.run(middleware({"type": "websocket", "path": "/ws"}, _receive, record))
    assert received == ["lifespan.startup", "websocket"]
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert seen == [b"idle", b"idle"]


def test_a_status_that_cannot_be_written_never_fails_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Said once in the log; the requests are served."""
    monkeypatch.setenv("SCOREBOARD_DIR", str(tmp_path / "no" / "such"))
    middleware = wsgi.ScoreboardMiddleware(lambda e, s: [b"ok"])
    try:
        for _ in range(3):
            body = middleware(environ(), start_response)
            assert list(body) == [b"ok"]
            body.close()  # type: ignore[attr-defined]
    finally:
        _worker.WORKER.close()
    warnings = [r for r in caplog.records if r.name == "scoreboard"]
    assert len(warnings) == 1, warnings
    assert str(tmp_path / "no" / "such") in warnings[0].getMessage()
