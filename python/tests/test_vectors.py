"""The conformance vectors shared with the Rust and Perl tests
(client/tests/vectors/frames.json): each frame in a live worker's file reads as the
vector says."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from scoreboard import _frame, read_dir

VECTORS = Path(__file__).resolve().parents[2] / "client" / "tests" / "vectors" / "frames.json"


def load() -> List[Tuple[str, bytes, Optional[bytes]]]:
    """(name, the file's bytes, the status a reader returns or None)."""
    doc: Dict[str, Any] = json.loads(VECTORS.read_text())
    out = []
    for vector in doc["vectors"]:
        if "status_repeat" in vector:
            repeat = vector["status_repeat"]
            status: Optional[bytes] = bytes([repeat["byte"]]) * repeat["count"]
        else:
            status = bytes.fromhex(vector["status_hex"]) if "status_hex" in vector else None
        data = bytes.fromhex(vector["frame_hex"]) if "frame_hex" in vector else None
        if data is None:
            assert status is not None
            data = _frame.encode(status)
        expected = status if vector["expect"] == "status" else None
        out.append((vector["name"], data, expected))
    return out


def test_every_vector_reads_as_the_others_read_it(tmp_path: Path) -> None:
    held = []
    vectors = load()
    assert len(vectors) >= 10
    try:
        for index, (_, data, _) in enumerate(vectors):
            path = tmp_path / f"status_v{index}"
            path.write_bytes(data)
            fd = os.open(path, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
        statuses = read_dir(tmp_path)
        for index, (name, _, expected) in enumerate(vectors):
            assert statuses.get(f"v{index}") == expected, name
        # Alive, skipped or not: nothing was reaped.
        assert len(os.listdir(tmp_path)) == len(vectors)
    finally:
        for fd in held:
            os.close(fd)


def test_status_vectors_are_the_frames_python_writes() -> None:
    for name, data, expected in load():
        if expected is not None and not data[len(_frame.encode(expected)) :]:
            assert _frame.encode(expected) == data, name
