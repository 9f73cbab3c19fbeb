#!/usr/bin/env bash
# bench/soak.sh: a stability soak: rounds of mixed write load against a fresh eddy, checking that it lives.
#
# Each round starts eddy (Release, --durability fsync unless DURABILITY says otherwise, --shard-limits off)
# on a fresh data folder, creates an 8-shard stream and runs three eddy-bench generators at once for
# SECONDS: PutRecord from 48 HTTP/1.1 clients, PutRecords of 20 records on 16 HTTP/1.1 connections and
# PutRecords of 50 records on 16 HTTP/2 streams. Many small requests finishing on sync workers keep both
# event loops busy with cross-thread wake-ups: the load that found the h2o socket-buffer race (see
# docs/BENCHMARKS.md, "Stability"). If eddy dies, the script stops, prints the end of its log and keeps
# the folder (log, data, core file if the shell allows core dumps); otherwise it removes the folder.
#
# Usage: bench/soak.sh [ROUNDS] [SECONDS]          (defaults: 10 rounds of 8 seconds)
# Environment: EDDY (binary to test, default build-release/eddy), DURABILITY (fsync|interval|none).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-10}
seconds=${2:-8}
durability=${DURABILITY:-fsync}
bench="$root/build-release/bench/eddy-bench"

cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF -DEDDY_BENCH=ON >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" >/dev/null
eddy=${EDDY:-$root/build-release/eddy}

work=""
pid=""
gens=()
cleanup() {
    for g in "${gens[@]}"; do kill "$g" 2>/dev/null || true; done
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for round in $(seq 1 "$rounds"); do
    work=$(mktemp -d "${TMPDIR:-/tmp}/eddy-soak.XXXXXX")
    (cd "$work" && exec "$eddy" serve --port 0 --data "$work/data" --state-delay-ms 0 --shard-limits off \
        --durability "$durability" >"$work/out" 2>"$work/log") &
    pid=$!
    endpoint=""
    for _ in $(seq 1 500); do
        endpoint=$(grep -o 'http://[0-9.:]*' "$work/log" 2>/dev/null || true)
        [ -n "$endpoint" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    if [ -z "$endpoint" ]; then
        echo "soak.sh: round $round: eddy did not start" >&2
        cat "$work/log" >&2
        exit 1
    fi
    "$bench" setup --endpoint "$endpoint" --stream soak --shards 8 >/dev/null
    gens=()
    "$bench" put-record --endpoint "$endpoint" --stream soak --connections 48 --duration "$seconds" --warmup 0 \
        >"$work/put-record" 2>&1 &
    gens+=($!)
    "$bench" put-records --endpoint "$endpoint" --stream soak --connections 16 --batch 20 \
        --duration "$seconds" --warmup 0 >"$work/put-records-h1" 2>&1 &
    gens+=($!)
    "$bench" put-records --endpoint "$endpoint" --stream soak --http2 --connections 16 --batch 50 \
        --duration "$seconds" --warmup 0 >"$work/put-records-h2" 2>&1 &
    gens+=($!)
    for g in "${gens[@]}"; do wait "$g" || true; done
    gens=()
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "soak.sh: round $round: eddy DIED; its folder is kept: $work" >&2
        tail -5 "$work/log" >&2
        work=""
        pid=""
        exit 1
    fi
    printf 'round %d ok: %s | %s | %s\n' "$round" "$(head -c 60 "$work/put-record")" \
        "$(head -c 45 "$work/put-records-h1")" "$(head -c 45 "$work/put-records-h2")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rm -rf "$work"
    work=""
done
echo "soak.sh: $rounds rounds, eddy stayed up"
