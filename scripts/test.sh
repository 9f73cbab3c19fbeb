#!/usr/bin/env bash
# Builds eddy with -Werror under AddressSanitizer + UBSan and runs every test (unit and integration)
# through ctest, after running each libFuzzer target briefly. Installs what it needs first.
# Extra arguments go to the main ctest run (e.g. -R unit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
(cd tests/integration/js && npm ci --no-audit --no-fund --loglevel=error)
(cd bench/peers && npm ci --no-audit --no-fund --loglevel=error) # kinesalite, for the producer test
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export EDDY_REQUIRE_BROWSER=1 # the dashboard's browser test must run (deps.sh installs chromium)

# The fuzzers (clang, libFuzzer), ten seconds each on their seed corpora.
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DEDDY_FUZZ=ON -DEDDY_TESTS=OFF \
  -DEDDY_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)"
(cd build-fuzz && ctest --output-on-failure -R '^fuzz/')

# An optimised build with -Werror too: some warnings (format-truncation, maybe-uninitialized) only appear
# at -O2 and above.
cmake -S . -B build-werror-release -DCMAKE_BUILD_TYPE=Release -DEDDY_WERROR=ON -DEDDY_TESTS=OFF >/dev/null
cmake --build build-werror-release -j"$(nproc)"

# Everything else, with gcc, -Werror, ASan and UBSan.
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DEDDY_WERROR=ON -DEDDY_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)"
cd build-test
ctest --output-on-failure -j2 "$@"
