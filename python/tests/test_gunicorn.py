"""The hooks in a real gunicorn (whichever this Python has: Debian's 20.1, or the
newest from PyPI in a virtual environment), serving real requests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator

import pytest

from scoreboard import _frame, read_dir

try:
    import gunicorn  # noqa: F401
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("gunicorn is not installed (Debian: python3-gunicorn)", allow_module_level=True)

APP = '''
import time
def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/slow"):
        time.sleep(float(environ.get("QUERY_STRING") or "3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''

CONFIG = "from scoreboard.gunicorn import *\n"

try:
    import gevent  # noqa: F401

    HAVE_GEVENT = True
except ImportError:
    HAVE_GEVENT = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Dict[str, object]]:
    options = getattr(request, "param", ["--workers", "2"])
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn.conf.py").write_text(CONFIG)
    port = free_port()
    scoreboard = tmp_path / "run" / "scoreboard"
    (tmp_path / "run").mkdir()
    env = {
        **os.environ,
        "RUNTIME_DIRECTORY": str(tmp_path / "run"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    env.pop("SCOREBOARD_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", *options, "app:app"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            if scoreboard.is_dir() and read_dir(scoreboard):
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield {"port": port, "dir": scoreboard, "process": process}
    finally:
        process.terminate()
        process.wait(timeout=10)


def fetch_later(port: int, path: str) -> threading.Thread:
    def get() -> None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read()
        except OSError:
            pass

    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    return thread


def wait_for(check, within: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return check()


def test_a_slow_request_shows_busy_then_idle(served: Dict[str, object]) -> None:
    directory = served["dir"]
    assert isinstance(directory, Path)
    port = served["port"]
    assert isinstance(port, int)
    # The fixture's warm-up request has its response before gunicorn runs post_request.
    statuses = wait_for(lambda: sorted(read_dir(directory).values()) == [b"idle", b"idle"])
    assert statuses, read_dir(directory)
    thread = fetch_later(port, "/slow?1.5")
    busy = wait_for(lambda: b"busy GET /slow" in read_dir(directory).values())
    assert busy, read_dir(directory)
    thread.join()
    assert wait_for(lambda: sorted(read_dir(directory).values()) == [b"idle", b"idle"])


def test_a_killed_worker_is_reaped_and_replaced(served: Dict[str, object]) -> None:
    directory = served["dir"]
    assert isinstance(directory, Path)
    before = wait_for(lambda: len(read_dir(directory)) == 2 and read_dir(directory))
    victim = sorted(before)[0]
    os.kill(int(victim), 9)
    after = wait_for(lambda: victim not in read_dir(directory) and len(read_dir(directory)) == 2
                     and read_dir(directory))
    assert after and victim not in after, after


@pytest.mark.parametrize("served", [["--workers", "1", "--timeout", "2"]], indirect=True)
def test_gunicorn_timeout_leaves_the_request_for_the_reaper(served: Dict[str, object]) -> None:
    directory = served["dir"]
    assert isinstance(directory, Path)
    port = served["port"]
    assert isinstance(port, int)
    (worker,) = wait_for(lambda: read_dir(directory))
    fetch_later(port, "/slow?30")
    path = directory / f"status_{worker}"

    def last_word() -> bytes:
        try:
            return _frame.decode(path.read_bytes(), 1 << 20)
        except (OSError, _frame.Undecodable):
            return b""

    # The aborted worker's file is left, saying which request timed out, for a reader
    # to reap (the agent then logs it); a reader finds it dead and removes it.
    assert wait_for(lambda: last_word() == b"timeout GET /slow", within=15), last_word()
    assert wait_for(lambda: worker not in read_dir(directory) and not path.exists(), within=10)


@pytest.mark.parametrize(
    "served", [["--workers", "1", "--worker-class", "gthread", "--threads", "4"]], indirect=True
)
def test_a_threaded_worker_shows_requests_in_flight(served: Dict[str, object]) -> None:
    directory = served["dir"]
    assert isinstance(directory, Path)
    port = served["port"]
    assert isinstance(port, int)
    first = fetch_later(port, "/slow?2")
    time.sleep(0.3)
    second = fetch_later(port, "/slow?2")
    status = wait_for(
        lambda: [s for s in read_dir(directory).values() if b"(+1 more in flight)" in s]
    )
    assert status and status[0] == b"busy GET /slow (+1 more in flight)", read_dir(directory)
    first.join()
    second.join()
    assert wait_for(lambda: list(read_dir(directory).values()) == [b"idle"])


@pytest.mark.parametrize(
    "served",
    [
        pytest.param(["--workers", "1", "--worker-class", "gthread", "--threads", "4"], id="gthread"),
        pytest.param(
            ["--workers", "1", "--worker-class", "gevent", "--worker-connections", "10"],
            id="gevent",
            marks=pytest.mark.skipif(
                not HAVE_GEVENT and os.environ.get("CI") != "true",
                reason="gevent is not installed",
            ),
        ),
    ],
    indirect=True,
)
def test_the_oldest_request_in_flight_is_named_and_the_others_counted(
    served: Dict[str, object],
) -> None:
    directory = served["dir"]
    assert isinstance(directory, Path)
    port = served["port"]
    assert isinstance(port, int)

    def status() -> bytes:
        return b"".join(read_dir(directory).values())

    first = fetch_later(port, "/slow/first?1.5")
    assert wait_for(lambda: status() == b"busy GET /slow/first"), status()
    others = [fetch_later(port, "/slow/second?3"), fetch_later(port, "/slow/third?3")]
    assert wait_for(lambda: status() == b"busy GET /slow/first (+2 more in flight)"), status()
    first.join()
    # The first is done: the next oldest is named (which of the two began first is
    # the server's choice).
    assert wait_for(lambda: status().endswith(b" (+1 more in flight)")), status()
    assert status() in (
        b"busy GET /slow/second (+1 more in flight)",
        b"busy GET /slow/third (+1 more in flight)",
    )
    for thread in others:
        thread.join()
    assert wait_for(lambda: status() == b"idle"), status()


def test_gunicorn_refuses_to_start_without_a_directory(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn.conf.py").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ("SCOREBOARD_DIR", "RUNTIME_DIRECTORY")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
         f"127.0.0.1:{free_port()}", "app:app"],
        cwd=tmp_path, env=env, capture_output=True, timeout=30,
    )
    assert out.returncode != 0
    assert b"set SCOREBOARD_DIR" in out.stderr, out.stderr[-2000:]
