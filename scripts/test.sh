#!/usr/bin/env bash
# Builds eddy with -Werror under AddressSanitizer + UBSan and runs every test (unit and integration)
# through ctest. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
(cd tests/integration/js && npm ci --no-audit --no-fund --loglevel=error)
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DEDDY_WERROR=ON -DEDDY_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build-test
ctest --output-on-failure -j2 "$@"
