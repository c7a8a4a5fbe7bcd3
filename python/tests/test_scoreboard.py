"""The Python writer and reader: the format, the lock, forks, kills, bounds."""

from __future__ import annotations

import errno
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

from scoreboard import MIN_CAPACITY, VISIBLE_EVERY_NS, Scoreboard, _frame, read_dir
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
    with Scoreboard(tmp_path, id="w", mapped=False) as board:
        board.update("idle")
        assert not board.mapped
        data = (tmp_path / "status_w").read_bytes()
    assert data == _frame.encode(b"idle")
    assert data[16:20] == b"\0\0\0\x04"


def test_a_mapped_file_is_the_perl_frame_then_slack(tmp_path: Path) -> None:
    with Scoreboard(tmp_path, id="w") as board:
        board.update("busy GET /report")
        board.update("idle")
        assert board.mapped
        data = (tmp_path / "status_w").read_bytes()
    frame = _frame.encode(b"idle")
    assert len(data) == MIN_CAPACITY
    # The tail of the longer status before it is slack, as after a shorter pwrite.
    assert data[: len(frame)] == frame
    assert data[len(_frame.encode(b"busy GET /report")) :] == bytes(MIN_CAPACITY - 36)


def test_a_mapped_file_grows_in_place_and_never_shrinks(tmp_path: Path) -> None:
    with Scoreboard(tmp_path, id="w") as board:
        path = tmp_path / "status_w"
        board.update("idle")
        assert path.stat().st_size == MIN_CAPACITY
        board.update("x" * 5000)
        assert read_dir(tmp_path) == {"w": b"x" * 5000}
        assert path.stat().st_size == 8192
        board.update("idle")
        assert read_dir(tmp_path) == {"w": b"idle"}
        assert path.stat().st_size == 8192
        assert board.mapped


def test_a_filesystem_that_cannot_map_gets_pwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> mmap.mmap:
        raise OSError(errno.ENODEV, "no mmap here")

    monkeypatch.setattr(mmap, "mmap", refuse)
    with Scoreboard(tmp_path, id="w") as board:
        board.update("idle")
        assert not board.mapped
        board.update("busy GET /a")
        assert read_dir(tmp_path) == {"w": b"busy GET /a"}


def test_a_status_that_is_not_utf8_is_kept_not_dropped(tmp_path: Path) -> None:
    text = b"busy \xff\xfe".decode("utf-8", "surrogateescape")
    with Scoreboard(tmp_path, id="w") as board:
        board.update(text)
        assert read_dir(tmp_path) == {"w": b"busy \xff\xfe"}


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "pwrite"])
def test_every_update_moves_the_modification_time(tmp_path: Path, mapped: bool) -> None:
    """Progress the agent can see whatever the text: the modification time moves at
    most VISIBLE_EVERY_NS after an update (at once with pwrite)."""
    late = VISIBLE_EVERY_NS / 1e9 + 0.02
    with Scoreboard(tmp_path, id="w", mapped=mapped) as board:
        board.update("busy GET /health")
        assert board.mapped == mapped
        path = board.path or ""
        first = os.stat(path).st_mtime_ns
        time.sleep(late)
        board.update("busy GET /health")
        second = os.stat(path).st_mtime_ns
        assert second > first
        time.sleep(late)
        board.update("idle")
        assert os.stat(path).st_mtime_ns > second
        assert read_dir(tmp_path) == {"w": b"idle"}


def test_readers_never_see_a_torn_mapped_frame(tmp_path: Path) -> None:
    """A writer storing frames as fast as it can (across a growth of the file too),
    read meanwhile: every read is one of its statuses, never a mix."""
    statuses = [b"A" * 64, b"B" * 200, b"C" * 3]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom scoreboard import Scoreboard\n"
            "b = Scoreboard(sys.argv[1], id='w')\nb.update('A' * 64)\nprint(flush=True)\n"
            "s = ('A' * 64, 'B' * 200, 'C' * 3)\n"
            "while True:\n    for t in s: b.update(t)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        seen = set()
        for _ in range(3000):
            status = read_dir(tmp_path).get("w")
            assert status in statuses, status
            seen.add(status)
        assert len(seen) > 1, seen
    finally:
        child.kill()
        child.wait()


def _perl_lib() -> Optional[Path]:
    """The interop copy of Parallel::Scoreboard beside the repository, if Perl can
    load it from there."""
    lib = Path(__file__).resolve().parents[3] / "shared" / "interop"
    try:
        out = subprocess.run(
            ["perl", f"-I{lib}", "-MParallel::Scoreboard", "-e", "1"], capture_output=True
        )
    except OSError:
        return None
    return lib if out.returncode == 0 else None


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "pwrite"])
def test_perl_reads_what_python_writes(tmp_path: Path, mapped: bool) -> None:
    lib = _perl_lib()
    if lib is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("perl or ../shared/interop/Parallel/Scoreboard.pm missing")
        pytest.skip("perl with ../shared/interop/Parallel/Scoreboard.pm is not available")
    with Scoreboard(tmp_path, id="py", mapped=mapped) as board:
        board.update("busy GET /a longer status first")
        board.update("busy GET /py é")
        out = subprocess.run(
            ["perl", f"-I{lib}", "-MParallel::Scoreboard", "-e",
             'my $s = Parallel::Scoreboard->new(base_dir => $ARGV[0], worker_id => sub { "perl" });'
             'my $all = $s->read_all; print map { "$_=$all->{$_}\n" } sort keys %$all;',
             str(tmp_path)],
            capture_output=True, check=True,
        )
    assert out.stdout == "py=busy GET /py é\n".encode(), out


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


def test_a_filesystem_that_cannot_reserve_gets_pwrite_and_a_full_one_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store into a mapping of a full filesystem is SIGBUS: blocks are reserved first,
    # and where that is not supported the file is written with pwrite.
    def unsupported(*_args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    with Scoreboard(tmp_path, id="w") as board:
        board.update("idle")
        assert not board.mapped
        assert read_dir(tmp_path) == {"w": b"idle"}

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError) as raised:
        Scoreboard(tmp_path, id="v").update("idle")
    assert raised.value.errno == errno.ENOSPC and str(tmp_path) in str(raised.value)


def test_a_mapping_that_cannot_grow_falls_back_to_pwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Scoreboard(tmp_path, id="w") as board:
        board.update("idle")
        assert board.mapped

        def refuse(*_args: object, **_kwargs: object) -> mmap.mmap:
            raise OSError(errno.ENOMEM, "no room to map")

        monkeypatch.setattr(mmap, "mmap", refuse)
        board.update("x" * 5000)
        assert not board.mapped
        assert read_dir(tmp_path) == {"w": b"x" * 5000}
        board.update("idle")
        assert read_dir(tmp_path) == {"w": b"idle"}


def test_request_lines_are_one_bounded_printable_line() -> None:
    assert request_line("GET", "/report?id=7") == "GET /report"
    # Invisible layout characters: a line separator, a right-to-left override.
    assert request_line("GET", "/a\u2028b\u202ec") == "GET /a\\u2028b\\u202ec"
    assert request_line("GET", "/café") == "GET /café"
    assert request_line("GET", "/a\nMAINPID=1") == "GET /a\\nMAINPID=1"
    assert request_line("GET", "/\x1b[2J\\") == "GET /\\x1b[2J\\\\"
    long = request_line("GET", "/" + "x" * 1000)
    assert len(long) < 220 and long.endswith("…")


def test_kept_frames_never_stand_for_another_status(tmp_path: Path) -> None:
    """Frames of recent statuses are kept (no md5 for "idle" again); whatever the kind
    of status, and past the number kept, each update reads back as itself."""

    class Text(str):
        pass

    with Scoreboard(tmp_path, id="w") as board:
        statuses = [
            "idle", b"idle", bytearray(b"busy"), memoryview(b"busy GET /m"), Text("idle"),
            "x" * 1000, "é", b"",
        ] + [f"busy GET /{i}" for i in range(200)] + ["idle", "busy GET /7"]
        for status in statuses:
            board.update(status)
            expected = status.encode() if isinstance(status, str) else bytes(status)
            assert read_dir(tmp_path) == {"w": expected}, status
