#!/usr/bin/env bash
# Runs the libFuzzer targets (fuzz/) for a given time each, two at a time (one per core).
#   tools/fuzz.sh [SECONDS] [TARGET...]     default: 600 s, every target
# Corpora grow in build/fuzz/corpus/<target> (seeded from fuzz/corpus/<target>); findings
# land in build/fuzz/findings/<target>/ and make the script exit 1. Copy a fixed finding into
# fuzz/corpus/<target>/ so ctest replays it from then on. Logs: build/fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(request config client_hello proxy_protocol session)
fi
tools/deps.sh fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
out=build/fuzz
mkdir -p "$out/logs"

run_one() {
  local t=$1
  mkdir -p "$out/corpus/$t" "$out/findings/$t"
  local dict=()
  if [[ -f "fuzz/$t.dict" ]]; then
    dict=(-dict="fuzz/$t.dict")  # tokens of the target's input format
  fi
  "$out/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/findings/$t/" "${dict[@]}" \
    "$out/corpus/$t" "fuzz/corpus/$t" >"$out/logs/$t.log" 2>&1
}

status=0
jobs=${JOBS:-2}
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do
  wait "$p" || status=1
done

for t in "${targets[@]}"; do
  log="$out/logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  findings=$(find "$out/findings/$t" -type f | wc -l)
  echo "$t: ${seconds}s, ${execs} executions, coverage ${cov:-?} edges (${ft:-?} features), corpus ${corp:-?}, findings ${findings}"
  ((findings == 0)) || status=1
done
exit $status
