#!/usr/bin/env bash
# Builds everything and runs the whole test suite (unit + integration) with ctest, twice: the
# dev build (warnings as errors) and the AddressSanitizer + UBSan build (leaks checked at each
# proxy exit). PRESETS="dev" (or "asan-ubsan") runs only that one. Then clang-tidy
# (tools/lint.sh) on the dev build's compile commands; its findings fail the run too.
set -euo pipefail
cd "$(dirname "$0")/.."
# Chromium renders the status page in tests/integration/test_status_page.py; clang-tidy lints;
# the base list brings wrk (test_zero_downtime_wrk.py) with the other test clients.
tools/deps.sh browser lint
status=0
for preset in ${PRESETS:-dev asan-ubsan}; do
  echo "=== preset $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset" -j2 || status=1
done
echo "=== lint"
tools/lint.sh || status=1
exit $status
