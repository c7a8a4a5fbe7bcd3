"""Cost of one ``Scoreboard.update`` of a 64-byte status, alternating two texts so
every update writes a new frame (no repeat is skipped), mapped and with ``pwrite``.

    PYTHONPATH=python/src python3 python/benches/update.py [DIR]

DIR (default: a new directory under /dev/shm) holds the status file. Each figure is
the best of several rounds of 50,000 updates: the least disturbed by other load.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from scoreboard import Scoreboard

ROUNDS = 15
PER_ROUND = 50_000


def ns_per_update(directory: str, mapped: bool) -> float:
    board = Scoreboard(directory, id="bench-mapped" if mapped else "bench-pwrite", mapped=mapped)
    update = board.update
    texts = ("A" * 64, "B" * 64)
    for i in range(20_000):
        update(texts[i & 1])
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for i in range(PER_ROUND):
            update(texts[i & 1])
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
    version = sys.version.split()[0]
    try:
        for mapped in (True, False):
            label = "mapped" if mapped else "pwrite"
            print(f"python {version}, update of a 64-byte status, {label}: "
                  f"{ns_per_update(directory, mapped):.0f} ns")
    finally:
        if made:
            os.rmdir(directory)


if __name__ == "__main__":
    main()
