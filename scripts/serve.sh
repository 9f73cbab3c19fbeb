#!/usr/bin/env bash
# Builds eddy (release) and runs `eddy serve` on its defaults: port 4567, data in ./eddy-data.
# Extra arguments go to `eddy serve` (see `eddy serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)"
exec build-release/eddy serve "$@"
