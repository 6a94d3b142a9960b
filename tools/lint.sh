#!/usr/bin/env bash
# clang-tidy over every proxy/**/*.cpp (headers under proxy/ through them), with the checks in
# .clang-tidy and every warning an error. Uses the dev build's compile_commands.json (configured
# here when missing) and runs two files at a time. Exit status 1 on any finding.
# Part of tools/test.sh; by hand: tools/lint.sh [FILE...] (default: all of proxy/).
set -euo pipefail
cd "$(dirname "$0")/.."

tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
if [[ -z "$tidy" ]]; then
  echo "lint: clang-tidy is not installed (tools/deps.sh installs it)" >&2
  exit 1
fi
db=build/dev
if [[ ! -f $db/compile_commands.json ]]; then
  # Generated headers (the CLI help) are part of what the sources include: build, not only
  # configure.
  cmake --preset dev >/dev/null
  cmake --build --preset dev
fi

if (($#)); then
  files=("$@")
else
  mapfile -t files < <(find proxy -name '*.cpp' | sort)
fi
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The compile commands are GCC's: clang does not know some of its warning flags. xargs rather
# than run-clang-tidy: version 14's has no --warnings-as-errors.
status=0
printf '%s\0' "${files[@]}" |
  xargs -0 -P "${LINT_JOBS:-2}" -n 1 "$tidy" -p "$db" --quiet --warnings-as-errors='*' \
    --extra-arg=-Wno-unknown-warning-option >"$log" 2>&1 || status=1
# clang-tidy prints "N warnings generated." for suppressed ones (system headers): noise here.
grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter=|^$' "$log" || true
elapsed=$(($(date +%s) - start))
if ((status)); then
  echo "=== lint: clang-tidy FAILED on ${#files[@]} file(s) in ${elapsed}s (findings above)"
  exit 1
fi
echo "=== lint: clang-tidy clean on ${#files[@]} file(s) in ${elapsed}s"
