#!/usr/bin/env bash
# Builds wkproxy (release) and runs it in the foreground. Usage: tools/run.sh [CONFIG]
# Default config: config/wkproxy.yaml (listens on 127.0.0.1:8080, origin 127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target wkproxy
exec build/release/wkproxy -c "${1:-config/wkproxy.yaml}"
