#!/usr/bin/env bash
# benches/gunicorn-hooks.sh: what the Python package's gunicorn hooks cost a hello-world app.
#
# Two gunicorn servers with sync workers run side by side, one with the scoreboard hooks
# (python/src) and one without; ab loads them in alternating rounds, so that whatever
# else the machine is doing falls on both alike. Prints requests/s for each and their
# ratio (goal: with hooks >= 97 % of without), overall and as the median of the rounds'
# ratios (each round pairs the two sides a moment apart), then the hooks' own cost per
# request, pre_request + post_request called directly with a stand-in request, and the
# ratio that cost alone predicts.
#
#   benches/gunicorn-hooks.sh                       # 1 worker, 20 rounds of 2,000
#   WORKERS=4 ROUNDS=10 REQUESTS=10000 benches/gunicorn-hooks.sh
#
# Needs Debian's python3 with gunicorn (python3-gunicorn; PYTHON overrides) and ab
# (apache2-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-/usr/bin/python3}
workers=${WORKERS:-1}
rounds=${ROUNDS:-20}
requests=${REQUESTS:-2000}
concurrency=${CONCURRENCY:-4}
say() { echo "gunicorn-hooks: $*" >&2; }

command -v ab >/dev/null || { say "ab is missing (apt-get install apache2-utils)"; exit 1; }
"$python" -c 'import gunicorn' 2>/dev/null || { say "$python has no gunicorn"; exit 1; }

# Both servers share one CPU and ab has the other: otherwise which CPU each worker lands
# on (and what else runs there) differs more between the two than the hooks do.
server_cpu=() client_cpu=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_cpu=(taskset -c "${SERVER_CPU:-1}")
    client_cpu=(taskset -c "${CLIENT_CPU:-0}")
fi

scratch=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

cat >"$scratch/app.py" <<'EOF'
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world\n"]
EOF
echo "from scoreboard.gunicorn import *" >"$scratch/with.conf.py"
: >"$scratch/without.conf.py"

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -A port master cpu_us
for side in without with; do
    port[$side]=$(free_port)
    SCOREBOARD_DIR="$scratch/scoreboard" PYTHONPATH="$root/python/src:$scratch" \
        "${server_cpu[@]}" "$python" -m gunicorn -c "$scratch/$side.conf.py" --workers "$workers" \
        --worker-class sync --bind "127.0.0.1:${port[$side]}" --log-level warning \
        --chdir "$scratch" app:app 2>"$scratch/$side.log" &
    pids+=($!)
    master[$side]=$!
done
for side in without with; do
    for _ in $(seq 100); do
        if "$python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
            "http://127.0.0.1:${port[$side]}/" 2>/dev/null; then
            continue 2
        fi
        sleep 0.1
    done
    say "the server $side hooks did not start:"; cat "$scratch/$side.log" >&2; exit 1
done

# CPU time (clock ticks) the workers of a side have used: what the hooks add per
# request, whatever else the machine runs meanwhile.
worker_ticks() {
    local total=0 child stat fields
    for child in $(ps -o pid= --ppid "${master[$1]}"); do
        stat=$(cat "/proc/$child/stat" 2>/dev/null) || continue
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# One round: REQUESTS requests, CONCURRENCY at a time; prints "requests seconds".
round() {
    local out
    out=$("${client_cpu[@]}" ab -q -n "$1" -c "$concurrency" "http://127.0.0.1:${port[$2]}/" 2>&1)
    if ! grep -q '^Failed requests: *0$' <<<"$out" || grep -q '^Non-2xx' <<<"$out"; then
        say "round against the server $2 hooks failed:"; echo "$out" >&2; exit 1
    fi
    echo "$1 $(awk '/^Time taken for tests:/ { print $5 }' <<<"$out")"
}

gunicorn_version=$("$python" -c 'import gunicorn; print(gunicorn.__version__)')
echo "gunicorn $gunicorn_version ($python), $workers sync worker(s), hello world, ab -c $concurrency;" \
    "$rounds alternating rounds of $requests requests each${server_cpu:+; servers on CPU ${server_cpu[2]}, ab on ${client_cpu[2]}}"
round 1000 without >/dev/null
round 1000 with >/dev/null
declare -A total_requests=([without]=0 [with]=0) total_seconds=([without]=0 [with]=0)
declare -A ticks_before=([without]=$(worker_ticks without) [with]=$(worker_ticks with))
ratios=()
for r in $(seq "$rounds"); do
    # Who goes first alternates too: neither side always follows the other.
    if ((r % 2)); then order=(without with); else order=(with without); fi
    line="round $r:"
    declare -A rate=()
    for side in "${order[@]}"; do
        read -r n seconds < <(round "$requests" "$side")
        total_requests[$side]=$((total_requests[$side] + n))
        total_seconds[$side]=$(awk -v a="${total_seconds[$side]}" -v b="$seconds" 'BEGIN { print a + b }')
        rate[$side]=$(awk -v n="$n" -v s="$seconds" 'BEGIN { printf "%.1f", n / s }')
        line+=" $side ${rate[$side]%.*} req/s,"
    done
    ratios+=("$(awk -v a="${rate[with]}" -v b="${rate[without]}" 'BEGIN { printf "%.4f", a / b }')")
    echo "${line%,}"
done

# The hooks did publish: one file per worker, all idle now.
PYTHONPATH="$root/python/src" "$python" - "$scratch/scoreboard" "$workers" <<'EOF'
import sys
from scoreboard import read_dir
statuses = read_dir(sys.argv[1])
assert len(statuses) == int(sys.argv[2]) and set(statuses.values()) == {b"idle"}, statuses
EOF

hz=$(getconf CLK_TCK)
for side in without with; do
    cpu_us[$side]=$(awk -v t="$(( $(worker_ticks $side) - ticks_before[$side] ))" -v hz="$hz" \
        -v n="${total_requests[$side]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
done
without=$(awk -v n="${total_requests[without]}" -v s="${total_seconds[without]}" 'BEGIN { printf "%.1f", n / s }')
with=$(awk -v n="${total_requests[with]}" -v s="${total_seconds[with]}" 'BEGIN { printf "%.1f", n / s }')
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
    print (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }')
awk -v without="$without" -v with="$with" -v median="$median" \
    -v cpu_without="${cpu_us[without]}" -v cpu_with="${cpu_us[with]}" 'BEGIN {
    printf "without hooks: %.0f req/s\n", without
    printf "with hooks:    %.0f req/s\n", with
    printf "with / without: %.1f %% overall, %.1f %% median of the rounds (goal >= 97 %%)\n",
        with / without * 100, median * 100
    printf "worker CPU per request: without %.1f us, with %.1f us: with / without %.1f %% in requests per CPU second\n",
        cpu_without, cpu_with, cpu_without / cpu_with * 100
}'

SCOREBOARD_DIR="$scratch/direct" PYTHONPATH="$root/python/src" "$python" - "$without" "$workers" <<'EOF'
import os
import sys
import time
from scoreboard import gunicorn as hooks

class Request:
    method = "GET"
    path = "/api/v1/items/12345"

hooks.on_starting(None)
hooks.post_worker_init(None)
req = Request()
pre, post = hooks.pre_request, hooks.post_request
n = 50_000
best = float("inf")
for _ in range(7):
    start = time.perf_counter()
    for _ in range(n):
        pre(None, req)
        post(None, req, None, None)
    best = min(best, (time.perf_counter() - start) / n * 1e6)
hooks.worker_exit(None, None)
print(f"hooks per request (pre_request + post_request, called directly, best of 7 x {n:,}): "
      f"{best:.2f} us")
# Worker time per request: the workers that can run at once over the rate without hooks.
request_us = 1e6 / float(sys.argv[1]) * min(int(sys.argv[2]), os.cpu_count() or 1)
print(f"predicted with / without from that, at {request_us:.0f} us of worker time per request: "
      f"{request_us / (request_us + best) * 100:.1f} %")
EOF
