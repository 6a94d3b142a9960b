#!/usr/bin/env bash
# Builds wkproxy (release) and runs it in the foreground.
#   tools/run.sh            the demo: the validation split on loopback with stand-ins for the
#                           origin, CloudFront and ACM, a check that prints PASS, then serving
#                           until Ctrl-C (wkproxy demo)
#   tools/run.sh CONFIG     the proxy with a real configuration (wkproxy -c CONFIG)
#   tools/run.sh --once     the demo, stopping after the check (exit 0 on PASS)
# WKPROXY_BIN=PATH runs that binary instead of building one (the tests run this script so).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${WKPROXY_BIN:-}
if [[ -z "$bin" ]]; then
  tools/deps.sh
  cmake --preset release >/dev/null
  cmake --build --preset release --target wkproxy
  bin=build/release/wkproxy
fi
case "${1:-}" in
  "") exec "$bin" demo ;;
  --once) exec "$bin" demo --once ;;
  *) exec "$bin" -c "$1" ;;
esac
