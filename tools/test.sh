#!/usr/bin/env bash
# Builds everything and runs the whole test suite (unit + integration) with ctest.
# PRESET=dev (default) or PRESET=asan-ubsan.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
preset="${PRESET:-dev}"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" -j2
