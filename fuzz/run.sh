#!/bin/sh
# Builds the libFuzzer targets into build-fuzz (clang, ASan + UBSan) and runs each for N seconds.
#   fuzz/run.sh [seconds]      (default 20)
# New inputs are kept in build-fuzz/fuzz/corpus-run/<target> (the seeds in fuzz/corpus/ are only read);
# a crash leaves its input in build-fuzz/fuzz/artifacts/ and makes the script exit nonzero.
set -eu

seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-fuzz"
targets="fuzz_request_json fuzz_segment_recovery fuzz_eventstream fuzz_cbor_request fuzz_policy fuzz_sigv4 fuzz_agg_decode fuzz_ddb_expr fuzz_base64_decode fuzz_agent_config fuzz_agent_process fuzz_put_reply"

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DEDDY_FUZZ=ON -DEDDY_TESTS=OFF -DEDDY_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets

status=0
for target in $targets; do
    work="$build/fuzz/corpus-run/$target"
    artifacts="$build/fuzz/artifacts"
    mkdir -p "$work" "$artifacts"
    echo "== $target: ${seconds}s"
    if ! "$build/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$target-" "$work" "$root/fuzz/corpus/$target"; then
        echo "!! $target failed; the input is in $artifacts/" >&2
        status=1
    fi
done
exit $status
