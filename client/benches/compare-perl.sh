#!/usr/bin/env bash
# Speed of the scoreboard crate beside Perl's Parallel::Scoreboard and the syscall
# floor, measured in one run on one machine, printed as ratios.
#
#   client/benches/compare-perl.sh            # full criterion runs (~3 min)
#   QUICK=1 client/benches/compare-perl.sh    # shorter measurements (~1 min)
#
# Needs perl with Class::Accessor::Lite and ../shared/interop (PERL5LIB overrides).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
perl_lib=${PERL_LIB:-$root/../shared/interop}
criterion_args=(--noplot)
if [[ ${QUICK:-} == 1 ]]; then
    criterion_args+=(--warm-up-time 1 --measurement-time 2)
fi

echo "== criterion: update and read benches" >&2
cargo bench -q -p scoreboard --bench update --bench read -- "${criterion_args[@]}" >&2
cargo build -q --release -p scoreboard --example live_workers

scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== perl: update of a 64-byte status" >&2
perl_update=$(perl -I"$perl_lib" -MParallel::Scoreboard -MTime::HiRes=time -e '
    my $sb = Parallel::Scoreboard->new(base_dir => $ARGV[0]);
    my @s = ("A" x 64, "B" x 64);
    $sb->update($s[$_ & 1]) for 1 .. 20000;
    my $n = 300000;
    my $t = time;
    $sb->update($s[$_ & 1]) for 1 .. $n;
    printf "%.1f\n", (time - $t) / $n * 1e9;
' "$scratch/update")

echo "== python: update of a 64-byte status (python/, this machine's python3)" >&2
python_update() { # DIR FRESH -> ns per update; FRESH=1: a new text every time
    mkdir -p "$1"
    PYTHONPATH="$root/python/src" python3 -c '
import sys, time
from scoreboard import Scoreboard
board = Scoreboard(sys.argv[1], id="py")
n = 300000
if sys.argv[2] == "1":
    # New texts, made before the clock starts: what a server publishing each request
    # pays, with no frame kept from before.
    texts = ["busy %058d" % i for i in range(n)]
else:
    texts = [("A" * 64, "B" * 64)[i & 1] for i in range(n)]
for text in texts[:20000]:
    board.update(text)
t = time.perf_counter()
for text in texts:
    board.update(text)
print("%.1f" % ((time.perf_counter() - t) / n * 1e9))
board.close()
' "$@"
}
python_update_two=$(python_update "$scratch/py-update" 0)
python_update_fresh=$(python_update "$scratch/py-update-fresh" 1)

perl_read() { # DIR COUNT -> ns per worker for read_all over COUNT live workers
    local dir=$1 count=$2
    mkdir -p "$dir"
    coproc HOLDER { "$root/target/release/examples/live_workers" "$dir" "$count"; }
    read -r ready <&"${HOLDER[0]}"
    [[ $ready == ready ]]
    perl -I"$perl_lib" -MParallel::Scoreboard -MTime::HiRes=time -e '
        my ($dir, $count) = @ARGV;
        my $sb = Parallel::Scoreboard->new(base_dir => $dir, worker_id => sub { "reader" });
        $sb->read_all;
        my $rounds = $count >= 10000 ? 3 : 20;
        my $t = time;
        for (1 .. $rounds) { keys(%{ $sb->read_all }) == $count or die "short read" }
        printf "%.1f\n", (time - $t) / $rounds / $count * 1e9;
    ' "$dir" "$count"
    eval "exec ${HOLDER[1]}>&-"
    wait "$HOLDER_PID" 2>/dev/null || true
}
echo "== perl: read_all at 1,000 and 10,000 workers" >&2
perl_read_1k=$(perl_read "$scratch/r1k" 1000)
perl_read_10k=$(perl_read "$scratch/r10k" 10000)

python3 - "$perl_update" "$perl_read_1k" "$perl_read_10k" "$python_update_two" "$python_update_fresh" <<'EOF'
import json, sys
perl_update, perl_read_1k, perl_read_10k, python_two, python_fresh = map(float, sys.argv[1:])

def median(*path):
    with open("target/criterion/" + "/".join(path) + "/new/estimates.json") as f:
        return json.load(f)["median"]["point_estimate"]

floor = median("update_64B", "floor_pwrite")
rows = [
    ("Parallel::Scoreboard (Perl)", perl_update),
    ("scoreboard (Python), 2 texts in turn", python_two),
    ("scoreboard (Python), a new text each", python_fresh),
    ("bare pwrite of the frame (floor)", floor),
    ("scoreboard, mapped", median("update_64B", "mapped")),
    ("scoreboard, pwrite", median("update_64B", "pwrite")),
    ("scoreboard, mapped, status unchanged", median("update_64B", "mapped_unchanged")),
]
print("update of a 64-byte status   ns/update   Perl / this   floor / this")
for name, ns in rows:
    print(f"{name:<38} {ns:9.1f} {perl_update / ns:10.1f}x {floor / ns:12.2f}x")

print()
print("read, per live worker                        1,000 workers          10,000 workers")
print("                                           ns    Perl/this        ns    Perl/this")
perl = {1000: perl_read_1k, 10000: perl_read_10k}
read_rows = [("Parallel::Scoreboard read_all (Perl)", None)] + [
    ("bare openat+flock+pread+close (floor)", "floor_open_flock_pread_close"),
    ("bare flock+pread on open files (floor)", "floor_flock_pread"),
    ("scoreboard read_dir (one-shot)", "read_dir"),
    ("scoreboard DirReader::sweep (long-lived)", "dir_reader_sweep"),
]
per_worker = {}
for name, bench in read_rows:
    cells = []
    for n in (1000, 10000):
        ns = perl[n] if bench is None else median("read_all", bench, str(n)) / n
        per_worker[(bench, n)] = ns
        cells.append(f"{ns:8.2f} {perl[n] / ns:10.1f}x")
    print(f"{name:<42} {'   '.join(cells)}")
print()
for n in (1000, 10000):
    one_shot = per_worker[("read_dir", n)] / per_worker[("floor_open_flock_pread_close", n)]
    print(f"read_dir / floor at {n:>6,} workers: {one_shot:.2f}x (goal <= 1.3x)")
for n in (1000, 10000):
    held = per_worker[("dir_reader_sweep", n)] / per_worker[("floor_flock_pread", n)]
    print(f"DirReader / flock+pread floor at {n:>6,} workers: {held:.2f}x")
growth = per_worker[("read_dir", 10000)] / per_worker[("read_dir", 1000)]
print(f"read_dir per-worker cost, 10,000 vs 1,000: {growth:.2f}x (goal <= 1.5x)")
EOF
