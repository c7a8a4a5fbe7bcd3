"""Cost of one ``Scoreboard.update`` of a 64-byte status: two texts alternating (their
frames kept, as a worker's "idle" and the paths it keeps serving; what
client/benches/compare-perl.sh measures), and a new text every time (encoded and
md5'd each time), mapped and with ``pwrite``.

    PYTHONPATH=python/src python3 python/benches/update.py [DIR]

DIR (default: a new directory under /dev/shm) holds the status files. Each figure is
the best of several rounds of 50,000 updates: the least disturbed by other load.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Sequence

from scoreboard import FRAME_CACHE_ENTRIES, Scoreboard

ROUNDS = 15
PER_ROUND = 50_000


def ns_per_update(directory: str, mapped: bool, texts: Sequence[str]) -> float:
    board = Scoreboard(directory, id=f"bench-{mapped}-{len(texts)}", mapped=mapped)
    update = board.update
    count = len(texts)
    for i in range(20_000):
        update(texts[i % count])
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for i in range(PER_ROUND):
            update(texts[i % count])
        best = min(best, (time.perf_counter() - start) / PER_ROUND * 1e9)
    assert board.mapped == mapped
    board.close()
    return best


def main() -> None:
    made = len(sys.argv) < 2
    if made:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        directory = tempfile.mkdtemp(prefix="scoreboard-bench-", dir=shm)
    else:
        directory = sys.argv[1]
    two = ["A" * 64, "B" * 64]
    # Many more than are kept: every update encodes and md5s anew.
    fresh = [f"{i:064d}" for i in range(FRAME_CACHE_ENTRIES * 64)]
    version = sys.version.split()[0]
    try:
        for label, mapped, texts in (
            ("mapped, two texts alternating", True, two),
            ("mapped, a new text every time", True, fresh),
            ("pwrite, a new text every time", False, fresh),
        ):
            ns = ns_per_update(directory, mapped, texts)
            print(f"python {version}, update of a 64-byte status, {label}: {ns:.0f} ns")
    finally:
        if made:
            os.rmdir(directory)


if __name__ == "__main__":
    main()
