#!/usr/bin/env bash
# bench/metrics-cost.sh: what recording metrics (and writing the request log) costs on the hot path.
#
# Builds BASE (a commit before metrics existed; default 7002e7a) in a temporary worktree and the current tree,
# both Release, and runs them alternately, ROUNDS times (default 3), each fresh: eddy --durability none
# --shard-limits off, a 4-shard stream, PutRecords 500 x 100 B with 32 requests in flight for DURATION s
# (default 10), then PutRecord latency with one client for DURATION s. The current tree runs twice per round:
# request log off (the default) and request log json to a file. Prints every round and the medians, and
# the ratios current/base. Throughput on this 2-core machine swings by +-30 % between identical runs (the
# load generator shares the cores), so the steadier figure is the server's CPU time per record and per
# call (utime + stime of the eddy process over the measured phase, from /proc/PID/stat). Traffic to 127.0.0.1 only; folders and servers are removed on exit.
#
# Usage: bench/metrics-cost.sh [BASE]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=${1:-7002e7a}
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building base $base and the current tree (Release)" >&2
git -C "$root" worktree add --detach "$work/base" "$base" >/dev/null 2>&1
cmake -S "$work/base" -B "$work/base/build" -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF -DEDDY_BENCH=OFF >/dev/null
cmake --build "$work/base/build" -j "$(nproc)" >/dev/null
cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF -DEDDY_BENCH=ON >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" >/dev/null
bench="$root/build-release/bench/eddy-bench"

# run NAME BINARY [extra eddy flags...]: one fresh server, both phases; appends "NAME recs/s p50 p99" to results
run() {
    local name=$1 bin=$2
    shift 2
    local d="$work/run-$name"
    rm -rf "$d" && mkdir -p "$d"
    "$bin" serve --port 0 --data "$d/data" --durability none --shard-limits off --state-delay-ms 0 "$@" 2>"$d/err" &
    local pid=$!
    pids+=("$pid")
    local ep=""
    for _ in $(seq 1 200); do
        ep=$(grep -o 'http://[0-9.:]*' "$d/err" | head -1 || true)
        [ -n "$ep" ] && break
        sleep 0.05
    done
    "$bench" setup --endpoint "$ep" --stream m --shards 4 >/dev/null
    local put lat cpu0 cpu1 cpu2
    "$bench" put-records --endpoint "$ep" --stream m --connections 32 --duration 2 --warmup 0 >/dev/null # warm-up
    cpu0=$(cpu_ticks "$pid")
    put=$("$bench" put-records --endpoint "$ep" --stream m --connections 32 --duration "$duration" --warmup 0 --json | tail -1)
    cpu1=$(cpu_ticks "$pid")
    lat=$("$bench" put-record --endpoint "$ep" --stream m --duration "$duration" --warmup 0 --json | tail -1)
    cpu2=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local rps p50 p99 rqs
    rps=$(grep -o '"records_per_s": *[0-9.]*' <<<"$put" | grep -o '[0-9.]*$')
    p50=$(grep -o '"p50_us": *[0-9.]*' <<<"$lat" | grep -o '[0-9.]*$')
    p99=$(grep -o '"p99_us": *[0-9.]*' <<<"$lat" | grep -o '[0-9.]*$')
    rqs=$(grep -o '"requests_per_s": *[0-9.]*' <<<"$lat" | grep -o '[0-9.]*$')
    # server CPU: microseconds per record (PutRecords phase) and per call (PutRecord phase)
    local hz cpu_rec cpu_call
    hz=$(getconf CLK_TCK)
    cpu_rec=$(python3 -c "print(($cpu1 - $cpu0) / $hz * 1e6 / ($rps * $duration))")
    cpu_call=$(python3 -c "print(($cpu2 - $cpu1) / $hz * 1e6 / ($rqs * $duration))")
    printf '%s %s %s %s %s %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_rec" "$cpu_call" | tee -a "$work/results" >&2
}

# user + system CPU ticks of a process so far
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

for r in $(seq 1 "$rounds"); do
    echo "round $r" >&2
    run base "$work/base/build/eddy"
    run metrics "$root/build-release/eddy"
    run metrics+reqlog "$root/build-release/eddy" --request-log json --request-log-file "$work/requests.log"
    rm -f "$work/requests.log"
done

python3 - "$work/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {n: [statistics.median(v[i] for v in vals) for i in range(5)] for n, vals in rows.items()}
print("| build | PutRecords records/s | server CPU µs per record | PutRecord p50 µs | p99 µs | server CPU µs per PutRecord | CPU per record vs base | CPU per PutRecord vs base |")
print("|---|---|---|---|---|---|---|---|")
b = med["base"]
for n in ("base", "metrics", "metrics+reqlog"):
    rps, p50, p99, cpu_rec, cpu_call = med[n]
    print(f"| {n} | {rps:,.0f} | {cpu_rec:.3f} | {p50:.0f} | {p99:.0f} | {cpu_call:.1f} | {cpu_rec / b[3]:.3f} | {cpu_call / b[4]:.3f} |")
print(f"(medians of {len(rows['base'])} rounds)")
EOF
