#!/usr/bin/env bash
# bench/run.sh: compares eddy with its peers on this machine in one go and prints a results table.
#
# Servers, one after the other, each fresh, with the same generator (bench/eddy-bench) on the same machine:
#   eddy-fsync    eddy --durability fsync --shard-limits off --state-delay-ms 0, its own fresh data folder
#   eddy-none     the same with --durability none
#   kinesalite    npm kinesalite (in memory), --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0
#   kinesis-mock  npm kinesis-local (in memory), plain HTTP port, stream state delays 0
# Each gets a 4-shard stream and, in this order: start-to-ready (spawn to the first ListStreams answer,
# polled every millisecond), idle RSS (VmRSS one second after ready, no stream yet), PutRecord latency with
# one client, PutRecords of 500 x 100 B with $CONNECTIONS requests in flight (VmRSS sampled every 100 ms
# during the run: its maximum is "RSS under load"; VmHWM after it; CPU time of the server and of its
# busiest thread over the run, from /proc/PID/task), then a GetRecords drain of everything the stream
# holds. Traffic goes to 127.0.0.1 only. Every phase is bounded in time; the script stops the
# servers it started and removes its folder on exit, also on Ctrl-C.
#
# Usage: bench/run.sh                      (about 5 minutes)
# Environment:
#   DURATION     measured seconds per phase (default 10); WARMUP: unmeasured seconds before (default 2)
#   CONNECTIONS  PutRecords requests in flight (default 32)
#   QUIET_WAIT   seconds to wait first for the machine to be 90 % idle (default 0: warn and go on)
#   SERVERS      which to run (default "eddy-fsync eddy-none kinesalite kinesis-mock")
#   RESULTS      where the table is also written (default bench/results/results.md; JSON lines beside it)
#   KINESALITE_PORT (24567), KINESIS_MOCK_PORT (24568; its TLS port is the next one). Keep fixed ports
#                below the ephemeral range (32768+), or a client polling a port nobody listens on yet can
#                connect to itself there and take it.
#   TMPDIR       the work folder goes there (eddy's data too): keep it on a real disk, fsync is measured
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${DURATION:-10}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-32}
servers=${SERVERS:-"eddy-fsync eddy-none kinesalite kinesis-mock"}
results=${RESULTS:-$root/bench/results/results.md}
kinesalite_port=${KINESALITE_PORT:-24567}
kinesis_mock_port=${KINESIS_MOCK_PORT:-24568}
shards=4
stream=bench
request_timeout=60 # per request, and how long requests in flight at a phase's end may take to finish
drain_cap=30       # the GetRecords drain stops after this many seconds
bench="$root/build-release/bench/eddy-bench"
eddy="$root/build-release/eddy"
peers="$root/bench/peers"

log() { printf '%s\n' "run.sh: $*" >&2; }

# --- build and install ---------------------------------------------------------------------------------
"$root/scripts/deps.sh" build
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "Node.js and npm are needed for the peers (scripts/deps.sh test installs them)"
    exit 1
fi
log "building eddy and eddy-bench (Release) in build-release"
cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF -DEDDY_BENCH=ON \
    >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" >/dev/null
installed="$peers/node_modules/.package-lock.json" # npm's record of what node_modules holds
if [ ! -f "$installed" ] || [ "$peers/package-lock.json" -nt "$installed" ]; then
    log "installing the peers with npm ci into bench/peers/node_modules"
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# --- process and folder cleanup ------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/eddy-bench.XXXXXX")
server_pid=""
sampler_pid=""

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    [ -n "$sampler_pid" ] && stop_pid "$sampler_pid"
    [ -n "$server_pid" ] && stop_pid "$server_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- measurement helpers -------------------------------------------------------------------------------
declare -A V # V[server.metric] = value

jget() { # jget KEY: the value of "KEY" in the JSON line on stdin
    sed -n 's/.*"'"$1"'":\("[^"]*"\|[^,}]*\).*/\1/p' | tr -d '"'
}

rss_kib() { # rss_kib PID FIELD: VmRSS or VmHWM in KiB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

start_sampler() { # start_sampler PID FILE: writes the largest VmRSS seen (KiB) into FILE
    local pid=$1 file=$2
    (
        max=0
        while kill -0 "$pid" 2>/dev/null; do
            r=$(rss_kib "$pid" VmRSS)
            [ "${r:-0}" -gt "$max" ] && max=$r && echo "$max" >"$file"
            sleep 0.1
        done
    ) &
    sampler_pid=$!
}

thread_ticks() { # thread_ticks PID: "TID TICKS" per thread (user + system clock ticks)
    local t
    for t in /proc/"$1"/task/*; do
        awk -v t="${t##*/}" '{ print t, $14 + $15 }' "$t/stat" 2>/dev/null || true
    done
}

cpu_split() { # cpu_split BEFORE AFTER SECONDS: "total cores (busiest thread)" between two thread_ticks
    awk -v hz="$(getconf CLK_TCK)" -v secs="$3" 'NR == FNR { b[$1] = $2; next }
        { d = $2 - b[$1]; total += d; if (d > max) max = d }
        END { printf "%.2f (%.2f)\n", total / hz / secs, max / hz / secs }' "$1" "$2"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# start_server NAME: spawns it, sets server_pid and endpoint, measures start-to-ready.
start_server() {
    local name=$1 t0 line
    local -a ready_args
    case $name in
    eddy-*)
        mkdir -p "$work/$name"
        t0=$EPOCHREALTIME
        # In its own folder with core dumps on: if it crashes, the core is kept (see alive).
        (cd "$work/$name" && ulimit -c unlimited &&
            exec "$eddy" serve --port 0 --data "$work/$name/data" --durability "${name#eddy-}" \
                --shard-limits off --state-delay-ms 0 --log-level warn 2>"$work/$name/stderr") &
        server_pid=$!
        ready_args=(--port-file "$work/$name/stderr")
        ;;
    kinesalite)
        port_free "$kinesalite_port" || { log "port $kinesalite_port is taken (KINESALITE_PORT)"; exit 1; }
        mkdir -p "$work/$name"
        t0=$EPOCHREALTIME
        node "$peers/node_modules/kinesalite/cli.js" --port "$kinesalite_port" --createStreamMs 0 \
            --deleteStreamMs 0 --updateStreamMs 0 >"$work/$name/stderr" 2>&1 &
        server_pid=$!
        ready_args=(--endpoint "http://127.0.0.1:$kinesalite_port")
        ;;
    kinesis-mock)
        if ! port_free "$kinesis_mock_port" || ! port_free $((kinesis_mock_port + 1)); then
            log "port $kinesis_mock_port or the next is taken (KINESIS_MOCK_PORT)"
            exit 1
        fi
        mkdir -p "$work/$name"
        t0=$EPOCHREALTIME
        # server.json (its self-signed certificate for the TLS port) is read from the working folder.
        (cd "$peers/node_modules/kinesis-local" &&
            exec env KINESIS_MOCK_PLAIN_PORT="$kinesis_mock_port" \
                KINESIS_MOCK_TLS_PORT=$((kinesis_mock_port + 1)) KINESIS_MOCK_CERT_PATH=server.json \
                CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms UPDATE_SHARD_COUNT_DURATION=0ms \
                UPDATE_STREAM_MODE_DURATION=0ms SHOULD_PERSIST_DATA=false LOG_LEVEL=ERROR \
                node main.js) >"$work/$name/stderr" 2>&1 &
        server_pid=$!
        ready_args=(--endpoint "http://127.0.0.1:$kinesis_mock_port")
        ;;
    *)
        log "unknown server $name"
        exit 1
        ;;
    esac
    line=$("$bench" ready "${ready_args[@]}" --since "$t0" --timeout 30 --json --label "$name" | tail -1) ||
        { log "$name did not become ready; its log:"; tail -20 "$work/$name/stderr" >&2; return 1; }
    echo "$line" >>"$work/results.jsonl"
    V[$name.ready_ms]=$(jget ready_ms <<<"$line")
    endpoint=$(jget endpoint <<<"$line")
}

# alive NAME PHASE: true while the server runs. If it is gone, records how it ended, prints its log and keeps
# the log and any core file in bench/results/NAME-crash/.
alive() {
    local name=$1 phase=$2 status=0 keep
    kill -0 "$server_pid" 2>/dev/null && return 0
    wait "$server_pid" 2>/dev/null || status=$?
    server_pid=""
    V[$name.died]="exited during $phase (wait status $status)"
    log "$name: the server ${V[$name.died]}; the end of its log:"
    tail -20 "$work/$name/stderr" >&2 || true
    keep="$(dirname "$results")/$name-crash"
    mkdir -p "$keep"
    cp "$work/$name/stderr" "$keep/" 2>/dev/null || true
    find "$work/$name" -maxdepth 1 -name 'core*' -exec cp {} "$keep/" \; 2>/dev/null || true
    log "$name: log and any core file kept in $keep"
    return 1
}

measure() { # measure NAME
    local name=$1 line common
    log "$name: starting"
    if ! start_server "$name"; then
        stop_pid "$server_pid"
        server_pid=""
        return 0
    fi
    log "$name: ready in ${V[$name.ready_ms]} ms at $endpoint (pid $server_pid)"
    sleep 1
    V[$name.idle_kib]=$(rss_kib "$server_pid" VmRSS)
    common=(--endpoint "$endpoint" --stream "$stream" --timeout "$request_timeout" --json --label "$name")
    "$bench" setup "${common[@]}" --shards "$shards" >/dev/null || log "$name: setup failed"

    log "$name: PutRecord latency, 1 client, ${duration} s"
    line=$("$bench" put-record "${common[@]}" --connections 1 --warmup "$warmup" --duration "$duration" |
        tail -1) || true
    echo "$line" >>"$work/results.jsonl"
    V[$name.p50]=$(jget p50_us <<<"$line")
    V[$name.p99]=$(jget p99_us <<<"$line")
    V[$name.p999]=$(jget p999_us <<<"$line")
    V[$name.put1_rps]=$(jget requests_per_s <<<"$line")
    V[$name.put1_err]=$(jget errors <<<"$line")
    alive "$name" "PutRecord" || return 0

    log "$name: PutRecords 500 x 100 B, $connections in flight, ${duration} s"
    start_sampler "$server_pid" "$work/$name/rss_max"
    thread_ticks "$server_pid" >"$work/$name/ticks0"
    local t0=$EPOCHREALTIME
    line=$("$bench" put-records "${common[@]}" --connections "$connections" --batch 500 --record-bytes 100 \
        --warmup "$warmup" --duration "$duration" | tail -1) || true
    echo "$line" >>"$work/results.jsonl"
    thread_ticks "$server_pid" >"$work/$name/ticks1"
    V[$name.put_cpu]=$(cpu_split "$work/$name/ticks0" "$work/$name/ticks1" \
        "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')")
    stop_pid "$sampler_pid"
    sampler_pid=""
    V[$name.put_rps]=$(jget records_per_s <<<"$line")
    V[$name.put_mbps]=$(jget mb_per_s <<<"$line")
    local failed errors
    failed=$(jget failed_records <<<"$line")
    errors=$(jget errors <<<"$line")
    V[$name.put_bad]=$((${failed:-0} + ${errors:-0}))
    V[$name.load_kib]=$(cat "$work/$name/rss_max" 2>/dev/null || echo 0)
    V[$name.hwm_kib]=$(rss_kib "$server_pid" VmHWM)
    alive "$name" "PutRecords" || return 0

    # A slow server may still be working through requests its client gave up on: wait until it answers.
    "$bench" ready --endpoint "$endpoint" --timeout 120 >/dev/null || log "$name: not answering ListStreams"
    log "$name: GetRecords drain of everything in the stream (cap ${drain_cap} s)"
    line=$("$bench" get-records "${common[@]}" --limit 10000 --duration "$drain_cap" | tail -1) || true
    echo "$line" >>"$work/results.jsonl"
    V[$name.get_rps]=$(jget records_per_s <<<"$line")
    V[$name.get_records]=$(jget records <<<"$line")
    V[$name.get_complete]=$(jget complete <<<"$line")
    alive "$name" "the drain" || return 0

    stop_pid "$server_pid"
    server_pid=""
    rm -rf "$work/$name/data"
}

# --- run -----------------------------------------------------------------------------------------------
idle_share() { # the share of all CPUs idle over the next 2 seconds, in percent
    local a b
    a=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.0f\n", 100 * (y[1] - x[1]) / (y[2] - x[2] + (y[2] == x[2])) }'
}
# Other work on the machine skews every number: wait up to QUIET_WAIT seconds for it to be 90 % idle.
quiet_deadline=$((SECONDS + ${QUIET_WAIT:-0}))
idle_before=$(idle_share)
while [ "$idle_before" -lt 90 ] && [ "$SECONDS" -lt "$quiet_deadline" ]; do
    log "the machine is only ${idle_before}% idle; waiting for it to calm down"
    sleep 8
    idle_before=$(idle_share)
done
[ "$idle_before" -lt 90 ] &&
    log "warning: the machine is only ${idle_before}% idle: other work skews the numbers"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null || commit+=" + uncommitted changes in src"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for s in $servers; do
    measure "$s"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- table ---------------------------------------------------------------------------------------------
num() { # num VALUE DECIMALS: with thousands separators; "–" when empty
    [ -z "$1" ] && { echo "–"; return; }
    awk -v v="$1" -v d="$2" 'BEGIN {
        s = sprintf("%.*f", d, v); i = index(s, ".");
        ip = i ? substr(s, 1, i - 1) : s; fp = i ? substr(s, i) : "";
        neg = ip ~ /^-/; if (neg) ip = substr(ip, 2);
        while (length(ip) > 3) { fp = "," substr(ip, length(ip) - 2) fp; ip = substr(ip, 1, length(ip) - 3) }
        print (neg ? "-" : "") ip fp }'
}
mib() {
    if [ -z "$1" ]; then echo "–"; else awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; fi
}
ratio() { # ratio A B: A / B
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0 || a + 0 == 0) print "–";
        else if (a / b >= 10) printf "%.0fx\n", a / b; else if (a / b >= 0.1) printf "%.2fx\n", a / b;
        else printf "%.3fx\n", a / b }'
}

has() { [[ " $servers " == *" $1 "* ]]; }
cols=()
for s in eddy-fsync eddy-none kinesalite kinesis-mock; do has "$s" && cols+=("$s"); done
ratio_pairs=()
for e in eddy-fsync eddy-none; do
    for p in kinesalite kinesis-mock; do
        has "$e" && has "$p" && ratio_pairs+=("$e/$p")
    done
done

row() { # row LABEL METRIC FORMAT: FORMAT is "int", "dec1", "mib" or "text" (no ratio)
    local metric=$2 fmt=$3 line="| $1 |" s v
    for s in "${cols[@]}"; do
        v=${V[$s.$metric]:-}
        case $fmt in
        int) line+=" $(num "$v" 0) |" ;;
        dec1) line+=" $(num "$v" 1) |" ;;
        mib) line+=" $(mib "$v") |" ;;
        text) line+=" ${v:-–} |" ;;
        esac
    done
    for pr in "${ratio_pairs[@]}"; do
        if [ "$fmt" = text ]; then
            line+=" |"
        else
            line+=" $(ratio "${V[${pr%/*}.$metric]:-}" "${V[${pr#*/}.$metric]:-}") |"
        fi
    done
    echo "$line"
}

{
    mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    fs=$(findmnt -n -o FSTYPE -T "$work")
    echo "eddy benchmark, $started, eddy at $commit; $(nproc) cores ($cpu), $mem"
    echo "generator: eddy-bench, 1 thread, HTTP/1.1 keep-alive, same machine;" \
        "${duration} s per phase after ${warmup} s warm-up;"
    echo "PutRecords with $connections requests in flight; 4-shard stream; eddy data on $fs ($work)"
    echo "machine idle before the run: ${idle_before}% of all CPUs;" \
        "load average before: $load_before, after: $load_after"
    echo
    header="| measurement |"
    sep="|---|"
    for s in "${cols[@]}"; do header+=" $s |"; sep+="---:|"; done
    for pr in "${ratio_pairs[@]}"; do header+=" $pr |"; sep+="---:|"; done
    echo "$header"
    echo "$sep"
    row "PutRecords 500 x 100 B, records/s" put_rps int
    row "PutRecords payload, MB/s" put_mbps dec1
    row "PutRecord p50, µs (1 client)" p50 int
    row "PutRecord p99, µs" p99 int
    row "PutRecord p99.9, µs" p999 int
    row "PutRecord requests/s (1 client)" put1_rps int
    row "GetRecords drain, records/s" get_rps int
    row "server CPU during PutRecords, cores (busiest thread)" put_cpu text
    row "server RSS under PutRecords load, MiB (max VmRSS)" load_kib mib
    row "server VmHWM after PutRecords, MiB" hwm_kib mib
    row "server idle RSS after start, MiB" idle_kib mib
    row "start to ready, ms" ready_ms dec1
    echo
    echo "Ratios are eddy ÷ peer: above 1 is better for eddy in throughput rows, below 1 in latency, RSS and"
    echo "start-time rows."
    notes=""
    for s in "${cols[@]}"; do
        state="NOT complete"
        [ "${V[$s.get_complete]:-}" = true ] && state=complete
        notes+="$s: PutRecords failed records + errors ${V[$s.put_bad]:-–}, "
        notes+="PutRecord errors ${V[$s.put1_err]:-–}, "
        notes+="drained ${V[$s.get_records]:-–} records ($state)"
        [ -n "${V[$s.died]:-}" ] && notes+="; THE SERVER ${V[$s.died]}"
        notes+=$'\n'
    done
    printf '%s' "$notes"
} | tee "$work/table.md"
mkdir -p "$(dirname "$results")"
cp "$work/table.md" "$results"
cp "$work/results.jsonl" "${results%.md}.jsonl"
log "table written to $results, raw JSON lines to ${results%.md}.jsonl"
