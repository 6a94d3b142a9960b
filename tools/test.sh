#!/usr/bin/env bash
# Builds everything and runs the whole test suite (unit + integration) with ctest, twice: the
# dev build (warnings as errors) and the AddressSanitizer + UBSan build (leaks checked at each
# proxy exit). PRESETS="dev" (or "asan-ubsan") runs only that one. Both run the workers on
# io_uring where this kernel allows it (`io: auto`); the dev build's integration tests then run
# once more with WKPROXY_IO=epoll, the engine wherever io_uring is refused. Then clang-tidy
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
  if [[ "$preset" == dev ]]; then
    echo "=== preset dev, integration tests on epoll (WKPROXY_IO=epoll)"
    WKPROXY_IO=epoll ctest --preset dev -j2 -R '^integration[.]' || status=1
  fi
done
echo "=== lint"
tools/lint.sh || status=1
exit $status
