#!/usr/bin/env bash
# bench/profile.sh: where eddy's time goes under load (perf sampling of the server).
#
# Builds eddy with frame pointers (build-profile: RelWithDebInfo, -fno-omit-frame-pointer, so that perf's
# call graphs through eddy's own code are whole), starts it with a fresh data folder, and samples it with
# `perf record -g` (999 Hz, every thread) while bench/eddy-bench drives one workload:
#   put-records   500 x 100 B batches, $CONNECTIONS in flight, for SECONDS
#   put-record    one client, one 100 B record at a time, for SECONDS
#   get-records   the stream is filled for SECONDS with PutRecords first (not sampled), then drained
# Prints the CPU split (eddy, generator, idle), the top functions by self time and by inclusive time, and
# the split by shared object and by thread. The server and its folder are removed on exit.
#
# Usage: bench/profile.sh [fsync|none|interval] [SECONDS] [WORKLOAD]     (defaults: fsync 10 put-records)
# Environment: CONNECTIONS (PutRecords in flight, default 32), PERF_DATA (keep perf.data there).
# Needs linux-perf (apt-get install linux-perf).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
durability=${1:-fsync}
seconds=${2:-10}
workload=${3:-put-records}
connections=${CONNECTIONS:-32}
command -v perf >/dev/null || { echo "profile.sh: perf is missing (apt-get install linux-perf)" >&2; exit 1; }

cmake -S "$root" -B "$root/build-profile" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDDY_TESTS=OFF \
    -DCMAKE_C_FLAGS=-fno-omit-frame-pointer >/dev/null
cmake --build "$root/build-profile" -j "$(nproc)" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/eddy-profile.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench="$root/build-profile/bench/eddy-bench"
"$root/build-profile/eddy" serve --port 0 --data "$work/data" --durability "$durability" --shard-limits off \
    --state-delay-ms 0 --log-level warn 2>"$work/stderr" &
pid=$!
endpoint=$("$bench" ready --port-file "$work/stderr" --timeout 10 | sed -n 's/^ready: \([^ ]*\) .*/\1/p')
"$bench" setup --endpoint "$endpoint" --stream profile --shards 4 >/dev/null

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }          # user + system, in clock ticks
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }          # idle + iowait, all CPUs
hz=$(getconf CLK_TCK)
common=(--endpoint "$endpoint" --stream profile)
case $workload in
put-records)
    load=(put-records "${common[@]}" --connections "$connections" --warmup 0 --duration "$seconds")
    ;;
put-record) load=(put-record "${common[@]}" --connections 1 --warmup 0 --duration "$seconds") ;;
get-records)
    "$bench" put-records "${common[@]}" --connections "$connections" --warmup 0 --duration "$seconds" >&2
    load=(get-records "${common[@]}" --duration 60)
    ;;
*)
    echo "profile.sh: unknown workload $workload" >&2
    exit 2
    ;;
esac
perf record -F 999 -g -p "$pid" -o "$work/perf.data" >"$work/perf.log" 2>&1 &
perf_pid=$!
sleep 0.5 # perf attaches to every thread before the load starts
server0=$(cpu_ticks "$pid")
idle0=$(idle_ticks)
t0=$EPOCHREALTIME
"$bench" "${load[@]}" &
bench_pid=$!
bench_ticks=0
while kill -0 "$bench_pid" 2>/dev/null; do
    bench_ticks=$(cpu_ticks "$bench_pid" 2>/dev/null || echo "$bench_ticks")
    sleep 0.2
done
wait "$bench_pid" || true
server1=$(cpu_ticks "$pid")
idle1=$(idle_ticks)
t1=$EPOCHREALTIME
kill -INT "$perf_pid"
wait "$perf_pid" || true
awk -v s=$((server1 - server0)) -v g="$bench_ticks" -v i=$((idle1 - idle0)) -v hz="$hz" \
    -v t0="$t0" -v t1="$t1" \
    -v n="$(nproc)" 'BEGIN { w = t1 - t0; printf "CPU during the run (%.1f s, %d cores): eddy %.2f cores, " \
    "eddy-bench %.2f cores, idle %.2f cores\n", w, n, s / hz / w, g / hz / w, i / hz / w }'

echo
# perf's own ordering is not by overhead once -F drops columns: sort the lines.
top() { grep -E '^ +[0-9]' | sort -t% -k1,1 -rn | head -"$1"; }
echo
echo "== eddy --durability $durability, $workload: top functions by self time (% of samples, all threads) =="
perf report -i "$work/perf.data" --no-children --sort sym -F overhead,dso,sym --stdio -g none \
    --percent-limit 0.8 2>/dev/null | top 30
echo
echo "== by inclusive time (self + callees; frames without a symbol left out) =="
perf report -i "$work/perf.data" --children --sort sym -F overhead_children,overhead,sym --stdio -g none \
    --percent-limit 3 2>/dev/null | grep -vE '\] (0x)?[0-9a-f]+ *$' | top 40
echo
echo "== by shared object =="
perf report -i "$work/perf.data" --no-children --sort dso -F overhead,dso --stdio -g none 2>/dev/null | top 10
echo
echo "== by thread =="
perf report -i "$work/perf.data" --no-children --sort pid -F overhead,pid --stdio -g none 2>/dev/null | top 10
echo
grep -E 'samples' "$work/perf.log" || true
if [ -n "${PERF_DATA:-}" ]; then
    cp "$work/perf.data" "$PERF_DATA"
    echo "perf data kept in $PERF_DATA (perf report -i $PERF_DATA; the binary is build-profile/eddy)"
fi
