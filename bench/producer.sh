#!/usr/bin/env bash
# bench/producer.sh: libeddy's producer against eddy: user records/s and producer CPU per million records,
# 100 B records, aggregation on and off, ROUNDS times each (default 3), one fresh eddy (--durability none
# --shard-limits off, a 4-shard stream) for the whole run; the eddy server's CPU per million records too.
# Needs a Release build with the benchmarks: BUILD_DIR (default build-release; cmake -S . -B build-release
# -DCMAKE_BUILD_TYPE=Release -DEDDY_BENCH=ON && cmake --build build-release). MODES (default "on off"):
# which aggregation settings to run. EDDY_ENV: extra environment for the eddy server only, as NAME=VALUE words
# (e.g. EDDY_ENV=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728,
# see docs/BENCHMARKS.md, "libeddy's producer").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-3}
build=${BUILD_DIR:-build-release}
case $build in /*) ;; *) build=$root/$build ;; esac
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck disable=SC2086
env ${EDDY_ENV:-} "$build/eddy" serve --port 0 --data "$work/data" --durability none --shard-limits off \
    --state-delay-ms 0 2>"$work/err" &
pid=$!
for _ in $(seq 1 200); do grep -q listening "$work/err" && break; sleep 0.05; done
ep=$(grep -o 'http://[0-9.:]*' "$work/err" | head -1)
"$build/bench/eddy-bench" setup --endpoint "$ep" --stream p --shards 4 >/dev/null
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
for agg in ${MODES:-on off}; do
    n=$([ "$agg" = on ] && echo 2000000 || echo 300000)
    for r in $(seq 1 "$rounds"); do
        t0=$(ticks)
        out=$("$build/bench/producer-bench" --endpoint "$ep" --stream p --records "$n" --aggregate "$agg")
        t1=$(ticks)
        server=$(python3 -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) / ($n / 1e6):.3f}')")
        echo "$out; eddy server CPU $server s per million"
    done
done
echo "eddy memory after the runs: $(grep -E '^(VmHWM|VmRSS)' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')"
