"""The Python writer and reader: the format, the lock, forks, kills, bounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scoreboard import Scoreboard, _frame, read_dir
from scoreboard.status import request_line


def test_update_then_read(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    with Scoreboard(directory, id="w1") as board:
        board.update("idle")
        assert read_dir(directory) == {"w1": b"idle"}
        board.update(b"busy GET /a")
        assert read_dir(directory) == {"w1": b"busy GET /a"}
        assert board.path == str(directory / "status_w1")
    assert read_dir(directory) == {}
    assert os.listdir(directory) == []


def test_the_file_is_the_perl_frame(tmp_path: Path) -> None:
    with Scoreboard(tmp_path, id="w") as board:
        board.update("idle")
        data = (tmp_path / "status_w").read_bytes()
    assert data == _frame.encode(b"idle")
    assert data[16:20] == b"\0\0\0\x04"


def test_a_status_that_is_not_utf8_is_kept_not_dropped(tmp_path: Path) -> None:
    text = b"busy \xff\xfe".decode("utf-8", "surrogateescape")
    with Scoreboard(tmp_path, id="w") as board:
        board.update(text)
        assert read_dir(tmp_path) == {"w": b"busy \xff\xfe"}


def test_every_update_moves_the_modification_time(tmp_path: Path) -> None:
    with Scoreboard(tmp_path, id="w") as board:
        board.update("busy GET /health")
        first = os.stat(board.path or "").st_mtime_ns
        time.sleep(0.02)
        board.update("busy GET /health")
        assert os.stat(board.path or "").st_mtime_ns > first


def test_bad_directories_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "no" / "such")):
        Scoreboard(tmp_path / "no" / "such")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=str(tmp_path / "file")):
        Scoreboard(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gone")):
        read_dir(tmp_path / "gone")
    with pytest.raises(ValueError):
        Scoreboard(tmp_path, id="a/b")


def test_a_dead_workers_file_is_reaped(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from scoreboard import Scoreboard; "
            "b = Scoreboard(sys.argv[1]); b.update('busy forever'); print(b.id, flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    pid = child.stdout.readline().decode().strip()
    assert read_dir(tmp_path) == {pid: b"busy forever"}
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert read_dir(tmp_path) == {}
    assert not (tmp_path / f"status_{pid}").exists()


def test_a_forked_child_has_its_own_file_and_never_unlocks_the_parents(tmp_path: Path) -> None:
    board = Scoreboard(tmp_path)
    board.update("parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            board.update("child")
            os.write(write, b"x")
            time.sleep(5)
        finally:
            os._exit(0)
    os.read(read, 1)
    try:
        assert read_dir(tmp_path) == {str(os.getpid()): b"parent", str(pid): b"child"}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # The child died: its file goes, the parent's lock held.
    assert read_dir(tmp_path) == {str(os.getpid()): b"parent"}
    board.close()


def test_hostile_entries_are_skipped_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(_frame.encode(b"secret"))
    (tmp_path / "status_link").symlink_to(victim)
    os.mkfifo(tmp_path / "status_fifo")
    (tmp_path / "status_dir").mkdir()
    (tmp_path / "status_x.tmp").write_bytes(_frame.encode(b"tmp"))
    os.link(victim, tmp_path / "status_hardlink")
    huge = tmp_path / "status_huge"
    huge.write_bytes(b"\0" * 16 + (1 << 30).to_bytes(4, "big"))
    assert read_dir(tmp_path) == {}
    assert victim.exists()


def test_reads_are_bounded(tmp_path: Path) -> None:
    with Scoreboard(tmp_path, id="a") as a, Scoreboard(tmp_path, id="b") as b:
        a.update("x" * 3000)
        b.update("y" * 3000)
        assert len(read_dir(tmp_path, max_status_bytes=4000)) == 1
        assert len(read_dir(tmp_path, max_workers=1)) == 1
        assert read_dir(tmp_path, max_status_len=100) == {}


def test_request_lines_are_one_bounded_printable_line() -> None:
    assert request_line("GET", "/report?id=7") == "GET /report"
    assert request_line("GET", "/a\nMAINPID=1") == "GET /a\\nMAINPID=1"
    assert request_line("GET", "/\x1b[2J\\") == "GET /\\x1b[2J\\\\"
    long = request_line("GET", "/" + "x" * 1000)
    assert len(long) < 220 and long.endswith("…")
