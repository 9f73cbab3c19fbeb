#!/usr/bin/env bash
# eddy agent with 1,000 files at 10 lines/s each (inotify, then the polling fallback): the agent's CPU and
# RSS (docs/BENCHMARKS.md, "eddy agent (issue 9)"). Usage: bench/agent.sh [BUILD_DIR] [extra agent_bench.py args]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-agent}
shift || true
cmake --build "$build" --target eddy >/dev/null
ulimit -n 20000 2>/dev/null || true
/usr/bin/python3 bench/agent_bench.py --eddy "$build/eddy" --files 1000 --rate 10 "$@"
/usr/bin/python3 bench/agent_bench.py --eddy "$build/eddy" --files 1000 --rate 10 --no-inotify "$@"
